"""The life of a job inside a worker: claim it, report progress, notice a cancel, end it.

    run_claimed(ctx, job_id, "w1@host", work)    # claim, work(job, reporter), end the job however it went
    net.learn_task(ds, progress=reporter.part(0.0, 0.8), should_stop=reporter.should_stop)   # inside `work`

Every write is a short transaction of its own through service/jobstate.py, naming this run's attempt: once
the job is taken from this worker (the reaper requeued it while the worker was silent, another worker
claimed it), its writes change nothing, `should_stop()` turns true and the work stops at its next check.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from learngene import Cancelled, DatasetError
from service import jobstate
from service.artifacts import ArtifactCorrupt, ArtifactMissing, ArtifactUnavailable
from service.models import Job, JobStatus
from workers.context import WorkerContext

log = logging.getLogger("workers")


class JobFailed(Exception):
    """The job cannot succeed; the message is for the person who asked for it."""


def run_claimed(ctx: WorkerContext, job_id: int, worker: str | None,
                work: Callable[[Job, "Reporter"], None]) -> None:
    """Claim the job and run `work`, which records success itself (`reporter.succeed`); any other ending is
    written here.

    User errors (a dataset the library refuses, bad options) fail the job with their message; anything
    unexpected fails it with the exception's type only, the trace going to the worker log.
    """
    with ctx.sessions() as s:
        attempt = jobstate.claim(s, job_id, worker or ctx.name, ctx.device)
        s.commit()
        job = s.get(Job, job_id) if attempt is not None else None
    if job is None:
        return
    reporter = Reporter(ctx, job_id, attempt)
    beat = JobHeartbeat(reporter)
    beat.start()
    try:
        work(job, reporter)
    except Cancelled:
        reporter.end(JobStatus.cancelled, "cancelled on request")
    except SoftTimeLimitExceeded:
        reporter.end(JobStatus.failed, "the job ran past its time limit")
    except (JobFailed, DatasetError, ValueError) as e:
        reporter.end(JobStatus.failed, str(e))
    except ArtifactUnavailable as e:  # before rows are written (artifacts first): nothing to take back
        retry_later(ctx, job_id, attempt, e)
    except (ArtifactMissing, ArtifactCorrupt) as e:
        log.error("job %s: %s", job_id, e)
        reporter.end(JobStatus.failed, f"a stored input failed its integrity check: {e}")
    except Exception as e:
        log.exception("job %s failed", job_id)
        reporter.end(JobStatus.failed, f"internal error ({type(e).__name__}); see the worker log")
    finally:
        beat.stop()


def retry_later(ctx: WorkerContext, job_id: int, attempt: int, error: Exception) -> None:
    """The artifact store could not be reached: queue the job again, sent after store_retry_s (doubled with each
    attempt), or fail it once it has had max_attempts runs. A cancel asked for meanwhile wins."""
    settings = ctx.settings
    with ctx.sessions() as s:
        job = s.get(Job, job_id)
        if job.cancel_requested:
            jobstate.end(s, job_id, attempt, JobStatus.cancelled, "cancelled on request")
        elif attempt < settings.max_attempts:
            if jobstate.requeue(s, job_id, attempt, f"the artifact store was unreachable: {error}"):
                s.commit()
                delay = settings.store_retry_s * 2 ** (attempt - 1)
                log.warning("job %s: artifact store unreachable (%s); queued again, in %g s", job_id, error, delay)
                if ctx.send is not None:  # else the sweeper sends it after republish_after_s
                    ctx.send(job, delay)
                return
        else:
            jobstate.end(s, job_id, attempt, JobStatus.failed,
                         f"the artifact store stayed unreachable over {attempt} attempt(s): {error}")
        s.commit()


class JobHeartbeat(threading.Thread):
    """Refreshes `job.heartbeat_at` while the job runs in this process; the reaper (workers/reaper.py)
    takes a job whose heartbeat stopped for a job whose process died. `on_beat` callbacks (the grow lease)
    run with each beat."""

    def __init__(self, reporter: "Reporter") -> None:
        super().__init__(name=f"job-{reporter.job_id}-heartbeat", daemon=True)
        self.reporter = reporter
        self.stopped = threading.Event()

    def run(self) -> None:
        r = self.reporter
        while not self.stopped.wait(r.ctx.settings.job_heartbeat_s):
            try:
                with r.ctx.sessions() as s:
                    if not jobstate.heartbeat(s, r.job_id, r.attempt):
                        r.lost = True
                    s.commit()
                for callback in list(r.on_beat):
                    callback()
            except Exception as e:  # noqa: BLE001 - the database may be restarting; try again next beat
                log.warning("job %s heartbeat failed: %s", r.job_id, e)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


class Reporter:
    """One run of one job: progress and cancel checks for the library's callbacks (throttled to spare the
    database), and the run's final write. Every write names the run's attempt."""

    def __init__(self, ctx: WorkerContext, job_id: int, attempt: int) -> None:
        self.ctx, self.job_id, self.attempt = ctx, job_id, attempt
        self.interval = ctx.settings.progress_interval_s
        self.lost = False  # the job was taken from this run: nothing it writes counts any more
        self.on_beat: list[Callable[[], None]] = []
        self._last_write = 0.0
        self._last_check = 0.0
        self._stop = False
        self._stage: str | None = None
        self.last: dict[str, Any] = {}

    def progress(self, info: dict[str, Any]) -> None:
        now = time.monotonic()
        stage = info.get("stage")
        done = info.get("epoch") is not None and info.get("epoch") == info.get("epochs")
        self.last = info
        # Always write a new stage and the last epoch; in between, at most one write per interval.
        if self.lost or (stage == self._stage and not done and now - self._last_write < self.interval):
            return
        self._stage, self._last_write = stage, now
        with self.ctx.sessions() as s:
            if not jobstate.progress(s, self.job_id, self.attempt, json_safe(info)):
                self.lost = True
            s.commit()

    def part(self, low: float, high: float) -> Callable[[dict[str, Any]], None]:
        """A progress callback for one stage of the job: its fractions 0..1 become low..high of the whole,
        so the job's fraction reaches 1.0 only when it ends."""

        def report(info: dict[str, Any]) -> None:
            fraction = info.get("fraction")
            scaled = low + (high - low) * float(fraction) if fraction is not None else low
            self.progress({**info, "fraction": round(min(scaled, high), 4)})

        return report

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._stop and (self.lost or now - self._last_check >= self.interval):
            self._last_check = now
            with self.ctx.sessions() as s:
                why = jobstate.should_stop(s, self.job_id, self.attempt)
            self.lost = self.lost or why == "lost"
            self._stop = why is not None
        return self._stop

    def end(self, status: JobStatus, error: str) -> None:
        """Fail or cancel this run (a no-op, logged, if the job is no longer this run's)."""
        with self.ctx.sessions() as s:
            jobstate.end(s, self.job_id, self.attempt, status, error)
            s.commit()


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
