"""Worker heartbeats in the registry: /readyz counts live workers; the same thread runs the reaper and sweeper.

    install(app, settings)       # on worker start: a thread upserts the `worker` row every few seconds
"""
from __future__ import annotations

import logging
import os
import threading
import time

from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from service.models import Worker, utcnow
from service.queue import send_job
from service.settings import Settings
from workers import reaper
from workers.context import worker_sessions

log = logging.getLogger("workers.heartbeat")


class Heartbeat(threading.Thread):
    def __init__(self, settings: Settings, name: str, queues: list[str], app: Celery | None = None) -> None:
        super().__init__(name="learngene-heartbeat", daemon=True)
        self.settings, self.worker_name, self.queues = settings, name, queues
        self.sessions = worker_sessions(settings)  # the reaper's changes wake event streams too
        self.stopped = threading.Event()
        self.app = app  # given: this thread is also the reaper (workers/reaper.py), at start and periodically
        self.last_reap = float("-inf")

    def reap(self) -> None:
        if self.app is None or time.monotonic() - self.last_reap < self.settings.reaper_interval_s:
            return
        self.last_reap = time.monotonic()
        reaper.reap(self.sessions, self.settings, lambda job: send_job(self.app, job))
        reaper.sweep(self.sessions, self.settings, lambda job: send_job(self.app, job))

    def beat(self) -> None:
        with self.sessions() as s:
            now = utcnow()
            if not s.execute(update(Worker).where(Worker.name == self.worker_name)
                             .values(heartbeat_at=now, queues=self.queues, pid=os.getpid())).rowcount:
                s.add(Worker(name=self.worker_name, queues=self.queues, pid=os.getpid(), started_at=now,
                             heartbeat_at=now))
            s.commit()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.beat()
            except Exception as e:  # noqa: BLE001 - the database may be restarting; try again next beat
                log.warning("heartbeat failed: %s", e)
            try:
                self.reap()
            except Exception as e:  # noqa: BLE001 - same; the next round tries again
                log.warning("reaper failed: %s", e)
            self.stopped.wait(min(self.settings.worker_heartbeat_s, self.settings.reaper_interval_s))

    def stop(self) -> None:
        self.stopped.set()
        try:
            with self.sessions() as s:
                s.execute(delete(Worker).where(Worker.name == self.worker_name))
                s.commit()
        except Exception as e:  # noqa: BLE001
            log.warning("could not remove worker row: %s", e)


def announce_device(sessions, name: str, device: str | None) -> None:
    """Record the worker's device on its row (made here if the heartbeat has not made it yet)."""
    for _ in range(3):
        try:
            with sessions() as s:
                if not s.execute(update(Worker).where(Worker.name == name).values(device=device)).rowcount:
                    now = utcnow()
                    s.add(Worker(name=name, queues=[], pid=os.getpid(), device=device, started_at=now,
                                 heartbeat_at=now))
                s.commit()
            return
        except IntegrityError:  # the heartbeat inserted it in between: update it now
            continue
        except Exception as e:  # noqa: BLE001 - the database may be restarting; the jobs still record it
            log.warning("could not announce the worker's device: %s", e)
            return


def install(app: Celery, settings: Settings) -> None:
    state: dict[str, Heartbeat] = {}

    @worker_ready.connect(weak=False)
    def _start(sender=None, **_):
        if sender is None or sender.app is not app:
            return
        queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values())
        state["beat"] = Heartbeat(settings, sender.hostname, queues, app=app)
        state["beat"].start()

    @worker_shutdown.connect(weak=False)
    def _stop(sender=None, **_):
        if "beat" in state:
            state.pop("beat").stop()
