"""The Celery app object and how the API sends jobs: by task name, carrying only the job id.

    app = make_celery(settings)
    send_job(app, job)          # after the job row is committed
    send_job(app, job, countdown=5)   # again later (a job waiting for its collective, or for the store)

The API never imports `workers/`; workers import this module and register their tasks on the app
under the names below (`celery -A workers.app worker`).
"""
from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from service.models import Job, JobKind
from service.settings import Settings

GROW_TASK = "learngene.grow_collective"
INDIVIDUAL_TASK = "learngene.train_individual"
GROW_QUEUE = "grow"
INDIVIDUAL_QUEUE = "individuals"

EXCHANGE = Exchange("learngene", type="direct")

TASK_FOR_KIND = {JobKind.task: (GROW_TASK, GROW_QUEUE), JobKind.individual: (INDIVIDUAL_TASK, INDIVIDUAL_QUEUE)}


def broker_options(settings: Settings) -> dict:
    if settings.embedded_broker:
        folder = settings.broker_folder
        for sub in ("queue", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        # One folder for in and out: producer and consumer are different processes on one disk.
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            "polling_interval": 0.5,
        }
    options: dict = {"visibility_timeout": settings.visibility_timeout_s}
    if settings.redis_key_prefix:
        options["global_keyprefix"] = settings.redis_key_prefix
    return options


def make_celery(settings: Settings) -> Celery:
    app = Celery("learngene", broker=settings.broker, set_as_current=False)
    app.conf.update(
        broker_transport_options=broker_options(settings),
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        # Job state lives in the registry, not in a Celery result backend.
        task_ignore_result=True,
        # A job is acknowledged only when it has finished, so a worker that dies gives it back ...
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # ... and a worker takes one job at a time, so long trainings are not hoarded by one process.
        worker_prefetch_multiplier=1,
        # Each queue has its own routing key: a grow message must never also land on the individuals queue.
        task_queues=[Queue(q, EXCHANGE, routing_key=q) for q in (GROW_QUEUE, INDIVIDUAL_QUEUE)],
        task_default_queue=INDIVIDUAL_QUEUE,
        task_default_exchange=EXCHANGE.name,
        task_default_routing_key=INDIVIDUAL_QUEUE,
        task_routes={GROW_TASK: {"queue": GROW_QUEUE}, INDIVIDUAL_TASK: {"queue": INDIVIDUAL_QUEUE}},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


def send_job(app: Celery, job: Job, countdown: float | None = None) -> None:
    """Publish the job's id on its queue (delivered `countdown` seconds from now). Call only after the row is
    committed."""
    name, queue = TASK_FOR_KIND[JobKind(job.kind)]
    app.send_task(name, args=[job.id], queue=queue, countdown=countdown)
