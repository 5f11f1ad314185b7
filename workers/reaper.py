"""The reaper: a job left `running` by a worker that died (SIGKILL, OOM, power cut) is found and ended.

    reap(sessions, settings, send)      # every worker runs this at start and every reaper_interval_s

A running job's heartbeat (`job.heartbeat_at`) is refreshed every `job_heartbeat_s` by a thread of the process
that trains it (workers/jobrun.py), so a job silent for `job_timeout_s` has lost that process. It is put back
on its queue if it has had fewer than `max_attempts` runs, failed with the reason otherwise, and cancelled if
a cancel was asked for. Each change is a conditional UPDATE, so several workers reaping at once are harmless.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.models import Job, JobStatus, Task, utcnow
from service.settings import Settings

log = logging.getLogger("workers.reaper")


def reap(sessions: sessionmaker[Session], settings: Settings, send: Callable[[Job], None]) -> dict[str, list[int]]:
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.job_timeout_s)
    out: dict[str, list[int]] = {"requeued": [], "failed": [], "cancelled": []}
    with sessions() as s:
        stale = s.scalars(select(Job).where(Job.status == JobStatus.running, Job.heartbeat_at < cutoff)).all()
        for job in stale:
            lost = (f"the worker running it ({job.worker}) stopped: no heartbeat for "
                    f"{settings.job_timeout_s:g} s")
            if job.cancel_requested:
                status, error, outcome = JobStatus.cancelled, "cancelled on request", "cancelled"
            elif job.attempts < settings.max_attempts:
                status, error, outcome = JobStatus.queued, None, "requeued"
            else:
                status, outcome = JobStatus.failed, "failed"
                error = f"{lost}, after {job.attempts} attempt(s) (max_attempts {settings.max_attempts})"
            values: dict = {"status": status, "error": error, "worker": None}
            if status == JobStatus.queued:
                values["progress"] = {"stage": "requeued", "fraction": 0.0, "reason": lost}
            else:
                values["finished_at"] = now
            done = s.execute(update(Job).where(Job.id == job.id, Job.status == JobStatus.running,
                                               Job.heartbeat_at < cutoff).values(**values)).rowcount
            if not done:
                continue  # it beat, or another reaper got there first
            if job.task_id is not None:
                task_values: dict = {"status": status}
                if status != JobStatus.queued:
                    task_values["finished_at"] = now
                s.execute(update(Task).where(Task.id == job.task_id).values(**task_values))
            s.commit()
            out[outcome].append(job.id)
            log.warning("job %s: %s; %s (attempt %s of %s)", job.id, lost, outcome, job.attempts,
                        settings.max_attempts)
            if status == JobStatus.queued:
                s.refresh(job)
                send(job)
    return out
