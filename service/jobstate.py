"""Job state: the one owner of every job transition, and of the status its task row mirrors.

    queued ──claim──▶ running ──succeed / end──▶ succeeded | failed | cancelled
      ▲  │               │
      │  └─cancel / fail_unsent──▶ cancelled | failed
      └──────requeue─────┘        (the reaper, start-up: the worker running it is gone)

    attempt = claim(s, job_id, "w1@host"); s.commit()       # None: not queued (a duplicate message)
    progress(s, job_id, attempt, {"stage": ..., "fraction": 0.3}); s.commit()
    if not succeed(s, job_id, attempt, result): s.rollback()   # a stale run: its rows are taken back

Every transition is one conditional UPDATE naming the state it expects. Those made by one run of a job
also name its attempt (`Job.attempts`, raised by each claim: the fencing token), so a worker whose job was
taken from it and claimed again writes nothing: the UPDATE matches no row, the function returns False
and logs it. Commit is the caller's: a final write joins the transaction recording the job's results,
and a refused one is rolled back with them.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import event, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.models import Job, JobStatus, Task, utcnow

log = logging.getLogger("service.jobstate")
CHANGED = "jobstate.changed"
Q, R = JobStatus.queued, JobStatus.running


def _mirror(s: Session, task_id: int | None, status: JobStatus, finished_at: datetime | None = None,
            **values: Any) -> None:
    """The task row shows the status of the job that learns it."""
    if task_id is not None:
        s.execute(update(Task).where(Task.id == task_id).values(status=status, finished_at=finished_at, **values))


def _run(job_id: int, attempt: int):
    """The WHERE clause of a write by run `attempt` of a job: it must still be running, and still be that run."""
    return (Job.id == job_id, Job.status == R, Job.attempts == attempt)


def changed(s: Session, job_id: int) -> None:
    """Note that the job changed in this transaction: `notify_on_commit` announces it once committed."""
    s.info.setdefault(CHANGED, set()).add(job_id)


def notify_on_commit(sessions: sessionmaker[Session], publish: Callable[[int], None]) -> None:
    """Call `publish(job_id)` for every job a committed transaction of `sessions` changed (service/events.py
    wakes the event streams of those jobs); nothing for a rolled-back one."""

    @event.listens_for(sessions, "after_commit")
    def _announce(session: Session) -> None:
        for job_id in session.info.pop(CHANGED, ()):
            try:
                publish(job_id)
            except Exception as e:  # noqa: BLE001 - streams fall back to polling; the job itself is fine
                log.warning("could not announce a change of job %s: %s", job_id, e)

    @event.listens_for(sessions, "after_rollback")
    def _forget(session: Session) -> None:
        session.info.pop(CHANGED, None)


def _stale(what: str, job_id: int, attempt: int) -> bool:
    log.warning("job %s: stale write (%s) by attempt %s ignored: the job was taken over or ended", job_id, what,
                attempt)
    return False


# ----------------------------------------------------------------------------- worker side


def claim(s: Session, job_id: int, worker: str, device: str | None = None) -> int | None:
    """queued → running. Returns the attempt number this run must name in its writes (None: not claimed).
    `worker` and `device` say where it runs (GET /jobs/{id}, the dashboard)."""
    now = utcnow()
    row = s.execute(
        update(Job).where(Job.id == job_id, Job.status == Q)
        .values(revision=Job.revision + 1, status=R, started_at=now, heartbeat_at=now, progress_at=now,
                worker=worker, device=device, error=None,
                attempts=Job.attempts + 1, progress={"stage": "starting", "fraction": 0.0})
        .returning(Job.attempts, Job.task_id)
    ).first()
    if row is None:
        log.info("job %s not claimed (status %s)", job_id, s.scalar(select(Job.status).where(Job.id == job_id)))
        return None
    _mirror(s, row.task_id, R)
    changed(s, job_id)
    return row.attempts


def defer(s: Session, job_id: int, info: dict[str, Any]) -> bool:
    """A queued job stays queued and its message is sent again later (a grow job whose collective is busy,
    workers/routing.py): records why, and when it was sent (the sweeper leaves it alone meanwhile)."""
    if s.execute(update(Job).where(Job.id == job_id, Job.status == Q)
                 .values(revision=Job.revision + 1, progress=info, published_at=utcnow())).rowcount:
        changed(s, job_id)
        return True
    return False


def progress(s: Session, job_id: int, attempt: int, info: dict[str, Any]) -> bool:
    """Record progress (and that the job is alive and moving)."""
    now = utcnow()
    if s.execute(update(Job).where(*_run(job_id, attempt))
                 .values(revision=Job.revision + 1, progress=info, heartbeat_at=now, progress_at=now)).rowcount:
        changed(s, job_id)
        return True
    return _stale("progress", job_id, attempt)


def heartbeat(s: Session, job_id: int, attempt: int) -> bool:
    """Record that the process running the job lives (not that the job moves: see `progress`)."""
    if s.execute(update(Job).where(*_run(job_id, attempt)).values(heartbeat_at=utcnow())).rowcount:
        return True
    return _stale("heartbeat", job_id, attempt)


def should_stop(s: Session, job_id: int, attempt: int) -> str | None:
    """Why run `attempt` should stop now: a cancel was asked for, or the job is no longer this run's."""
    row = s.execute(select(Job.status, Job.attempts, Job.cancel_requested).where(Job.id == job_id)).first()
    if row is None or row.status != R or row.attempts != attempt:
        return "lost"
    return "cancel" if row.cancel_requested else None


def succeed(s: Session, job_id: int, attempt: int, result: dict[str, Any], task: dict[str, Any] | None = None,
            last_progress: dict[str, Any] | None = None) -> bool:
    """running → succeeded, with the job's result and the task row's own results (`task`)."""
    now = utcnow()
    row = s.execute(
        update(Job).where(*_run(job_id, attempt))
        .values(revision=Job.revision + 1, status=JobStatus.succeeded, finished_at=now, heartbeat_at=now, result=result,
                progress={**(last_progress or {}), "stage": "done", "fraction": 1.0})
        .returning(Job.task_id)
    ).first()
    if row is None:
        return _stale("success", job_id, attempt)
    _mirror(s, row.task_id, JobStatus.succeeded, now, **(task or {}))
    changed(s, job_id)
    return True


def end(s: Session, job_id: int, attempt: int, status: JobStatus, error: str | None,
        stale_before: tuple[str, datetime] | None = None) -> bool:
    """running → failed or cancelled. `stale_before` ("heartbeat_at" or "progress_at", cutoff): only if that
    time is older than the cutoff (the reaper's condition, checked again in the same statement)."""
    assert status in (JobStatus.failed, JobStatus.cancelled)
    now = utcnow()
    where = list(_run(job_id, attempt))
    if stale_before is not None:
        where.append(getattr(Job, stale_before[0]) < stale_before[1])
    row = s.execute(update(Job).where(*where)
                    .values(revision=Job.revision + 1, status=status, error=error, finished_at=now, heartbeat_at=now)
                    .returning(Job.task_id)).first()
    if row is None:
        return _stale(status.value, job_id, attempt)
    _mirror(s, row.task_id, status, now)
    changed(s, job_id)
    return True


def requeue(s: Session, job_id: int, attempt: int, reason: str, stale_before: datetime | None = None) -> bool:
    """running → queued: the run `attempt` lost its worker. The caller commits, then sends the message
    (a lost send is repaired by the sweeper: `published_at` is set here)."""
    now = utcnow()
    where = list(_run(job_id, attempt))
    if stale_before is not None:
        where.append(Job.heartbeat_at < stale_before)
    row = s.execute(update(Job).where(*where)
                    .values(revision=Job.revision + 1, status=Q, worker=None, device=None, error=None,
                            published_at=now,
                            progress={"stage": "requeued", "fraction": 0.0, "reason": reason})
                    .returning(Job.task_id)).first()
    if row is None:
        return False  # it beat in between, or another reaper got there first: not an error
    _mirror(s, row.task_id, Q)
    changed(s, job_id)
    return True


# ----------------------------------------------------------------------------- API side


def cancel(s: Session, job_id: int) -> JobStatus | None:
    """queued → cancelled at once; running → cancel_requested (its worker stops at its next check).
    Returns the status it left the job in, or None when it was already final."""
    now = utcnow()
    row = s.execute(update(Job).where(Job.id == job_id, Job.status == Q)
                    .values(revision=Job.revision + 1, status=JobStatus.cancelled, finished_at=now,
                            cancel_requested=True)
                    .returning(Job.task_id)).first()
    if row is not None:
        _mirror(s, row.task_id, JobStatus.cancelled, now)
        changed(s, job_id)
        return JobStatus.cancelled
    if s.execute(update(Job).where(Job.id == job_id, Job.status == R)
                 .values(revision=Job.revision + 1, cancel_requested=True)).rowcount:
        changed(s, job_id)
        return R
    return None


def fail_unsent(s: Session, job_id: int, error: str) -> bool:
    """queued → failed: its message could not be sent and the client is told so (503)."""
    now = utcnow()
    row = s.execute(update(Job).where(Job.id == job_id, Job.status == Q)
                    .values(revision=Job.revision + 1, status=JobStatus.failed, error=error, finished_at=now)
                    .returning(Job.task_id)).first()
    if row is None:
        return False
    _mirror(s, row.task_id, JobStatus.failed, now)
    changed(s, job_id)
    return True


# ----------------------------------------------------------------------------- messages


def unpublished(s: Session, cutoff: datetime, limit: int = 100) -> list[Job]:
    """Queued jobs whose last message is older than `cutoff`: it may never have been sent (a crash between
    commit and publish) or been lost. Sending one again is harmless: a second claim matches nothing."""
    sent_before = or_(Job.published_at < cutoff, Job.published_at.is_(None))  # None: a job from before 0003
    return list(s.scalars(select(Job).where(Job.status == Q, sent_before).order_by(Job.id).limit(limit)))


def mark_published(s: Session, job: Job) -> bool:
    """Record a re-send; conditional, so two sweepers at once send a job once."""
    same = Job.published_at.is_(None) if job.published_at is None else Job.published_at == job.published_at
    return bool(s.execute(update(Job).where(Job.id == job.id, Job.status == Q, same)
                          .values(published_at=utcnow())).rowcount)
