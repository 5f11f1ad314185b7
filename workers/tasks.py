"""The Celery tasks: thin wrappers that hand a job id to the plain functions doing the work.

    register(app, settings)      # workers/app.py does this for `celery -A workers.app worker`

The names are the ones the API sends (service.queue); the message carries only the job id.
"""
from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init, worker_process_init

from service.queue import GROW_TASK, INDIVIDUAL_TASK, send_job
from service.settings import Settings
from workers.context import WorkerContext


def register(app: Celery, settings: Settings) -> None:
    contexts: dict[int, WorkerContext] = {}
    node: dict[str, str] = {}

    @worker_init.connect(weak=False)
    def remember_node_name(sender=None, **_) -> None:
        # Sent before the pool forks, so pool processes inherit it; jobs record which worker ran them.
        if sender is not None and sender.app is app:
            node["name"] = sender.hostname

    def context() -> WorkerContext:
        # One per process: Celery's prefork pool forks after registration, and connections must not cross.
        pid = os.getpid()
        if pid not in contexts:
            settings.apply_torch_threads()
            contexts[pid] = WorkerContext.from_settings(
                settings, send=lambda job, delay: send_job(app, job, countdown=delay))
        return contexts[pid]

    @worker_process_init.connect(weak=False)
    def announce(**_) -> None:
        # Each pool process, right after the fork: torch (and CUDA) start here, never in the parent, so the
        # process that trains is the one that says which device it has.
        if node.get("name"):
            from workers.heartbeat import announce_device

            ctx = context()
            announce_device(ctx.sessions, node["name"], ctx.device)

    # shared=False: otherwise Celery hands this closure (and its settings) to every app made later in the process.
    # Time limits per kind (prefork pool): the soft one raises in the job, which fails it with the reason;
    # the hard one, a minute later, kills a training that would not stop.
    def limits(hard_s: int) -> dict[str, int]:
        return {"time_limit": hard_s + 60, "soft_time_limit": hard_s}

    @app.task(name=GROW_TASK, bind=True, shared=False, **limits(settings.grow_time_limit_s))
    def grow_collective(self, job_id: int) -> None:
        from workers.grow import run_task_job  # torch is imported in the pool process, after the fork

        run_task_job(context(), job_id, worker=node.get("name") or self.request.hostname)

    @app.task(name=INDIVIDUAL_TASK, bind=True, shared=False, **limits(settings.individual_time_limit_s))
    def train_individual(self, job_id: int) -> None:
        from workers.individuals import run_individual_job

        run_individual_job(context(), job_id, worker=node.get("name") or self.request.hostname)
