"""The life of a job inside a worker: claim it, report progress, notice a cancel, end it.

    run_claimed(ctx, job_id, "w1@host", work)    # claim, work(job, reporter), end the job however it went
    net.learn_task(ds, progress=reporter.progress, should_stop=reporter.should_stop)   # inside `work`

Every write is a short transaction of its own, so the API always reads fresh progress.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from learngene import Cancelled, DatasetError
from service.artifacts import ArtifactCorrupt, ArtifactMissing
from service.models import Job, JobStatus, Task, utcnow
from workers.context import WorkerContext

log = logging.getLogger("workers")


class JobFailed(Exception):
    """The job cannot succeed; the message is for the person who asked for it."""


def run_claimed(ctx: WorkerContext, job_id: int, worker: str | None,
                work: Callable[[Job, "Reporter"], None]) -> None:
    """Claim the job and run `work`, which records success itself; any other ending is written here.

    User errors (a dataset the library refuses, bad options) fail the job with their message; anything
    unexpected fails it with the exception's type only, the trace going to the worker log.
    """
    job = claim(ctx, job_id, worker)
    if job is None:
        return
    beat = JobHeartbeat(ctx, job_id)
    beat.start()
    try:
        work(job, Reporter(ctx, job_id))
    except Cancelled:
        finish(ctx, job_id, JobStatus.cancelled, error="cancelled on request")
    except (JobFailed, DatasetError, ValueError) as e:
        finish(ctx, job_id, JobStatus.failed, error=str(e))
    except (ArtifactMissing, ArtifactCorrupt) as e:
        log.error("job %s: %s", job_id, e)
        finish(ctx, job_id, JobStatus.failed, error=f"a stored input failed its integrity check: {e}")
    except Exception as e:
        log.exception("job %s failed", job_id)
        finish(ctx, job_id, JobStatus.failed, error=f"internal error ({type(e).__name__}); see the worker log")
    finally:
        beat.stop()


class JobHeartbeat(threading.Thread):
    """Refreshes `job.heartbeat_at` while the job runs in this process; the reaper (workers/reaper.py)
    takes a job whose heartbeat stopped for a job whose process died."""

    def __init__(self, ctx: WorkerContext, job_id: int) -> None:
        super().__init__(name=f"job-{job_id}-heartbeat", daemon=True)
        self.ctx, self.job_id = ctx, job_id
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.ctx.settings.job_heartbeat_s):
            try:
                with self.ctx.sessions() as s:
                    s.execute(update(Job).where(Job.id == self.job_id, Job.status == JobStatus.running)
                              .values(heartbeat_at=utcnow()))
                    s.commit()
            except Exception as e:  # noqa: BLE001 - the database may be restarting; try again next beat
                log.warning("job %s heartbeat failed: %s", self.job_id, e)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


def claim(ctx: WorkerContext, job_id: int, worker: str | None = None) -> Job | None:
    """Move a queued job to running. The conditional UPDATE makes a duplicate message harmless."""
    with ctx.sessions() as s:
        now = utcnow()
        claimed = s.execute(
            update(Job).where(Job.id == job_id, Job.status == JobStatus.queued)
            .values(status=JobStatus.running, started_at=now, heartbeat_at=now, worker=worker or ctx.name,
                    attempts=Job.attempts + 1, progress={"stage": "starting", "fraction": 0.0})
        ).rowcount
        job = s.get(Job, job_id)
        if job is not None and job.task_id is not None and claimed:
            s.execute(update(Task).where(Task.id == job.task_id).values(status=JobStatus.running))
        s.commit()
    if not claimed:
        log.info("job %s not claimed (status %s)", job_id, job.status.value if job else "missing")
        return None
    return job


def finish(ctx: WorkerContext, job_id: int, status: JobStatus, error: str | None = None,
           result: dict | None = None) -> None:
    """End a job (and its task row) that did not succeed through the normal path."""
    with ctx.sessions() as s:
        now = utcnow()
        s.execute(update(Job).where(Job.id == job_id)
                  .values(status=status, error=error, result=result, finished_at=now, heartbeat_at=now))
        task_id = s.scalar(select(Job.task_id).where(Job.id == job_id))
        if task_id is not None:
            s.execute(update(Task).where(Task.id == task_id).values(status=status, finished_at=now))
        s.commit()


class Reporter:
    """Progress and cancel checks for the library's callbacks, throttled to spare the database."""

    def __init__(self, ctx: WorkerContext, job_id: int) -> None:
        self.ctx, self.job_id = ctx, job_id
        self.interval = ctx.settings.progress_interval_s
        self._last_write = 0.0
        self._last_check = 0.0
        self._stop = False
        self._stage: str | None = None

    def progress(self, info: dict[str, Any]) -> None:
        now = time.monotonic()
        stage = info.get("stage")
        done = info.get("epoch") is not None and info.get("epoch") == info.get("epochs")
        # Always write a new stage and the last epoch; in between, at most one write per interval.
        if stage == self._stage and not done and now - self._last_write < self.interval:
            return
        self._stage, self._last_write = stage, now
        with self.ctx.sessions() as s:
            s.execute(update(Job).where(Job.id == self.job_id)
                      .values(progress=json_safe(info), heartbeat_at=utcnow()))
            s.commit()

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._stop and now - self._last_check >= self.interval:
            self._last_check = now
            with self.ctx.sessions() as s:
                self._stop = bool(s.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)))
        return self._stop


def json_safe(value: Any) -> Any:
    """NaN and infinities become None: JSON has no spelling for them, and the API must not choke."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return json_safe(value.item())
    return value
