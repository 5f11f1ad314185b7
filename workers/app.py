"""The module `celery -A workers.app worker` loads: the worker app built from the environment.

    celery -A workers.app worker -Q grow,individuals -c 1 -n w1@%h
"""
from service.settings import Settings
from workers.worker import make_worker_app

app = make_worker_app(Settings())
