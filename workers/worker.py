"""A Celery app with this service's tasks and heartbeat installed.

    app = make_worker_app(settings)       # tests and `python -m workers`
"""
from __future__ import annotations

from celery import Celery

from service.queue import make_celery
from service.settings import Settings
from workers import heartbeat, tasks


def make_worker_app(settings: Settings) -> Celery:
    app = make_celery(settings)
    tasks.register(app, settings)
    heartbeat.install(app, settings)
    return app
