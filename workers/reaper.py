"""The reaper and the sweeper: no job is left `running` by a dead or stuck worker, nor `queued` unsent.

    reap(sessions, settings, send)      # every worker runs this at start and every reaper_interval_s
    sweep(sessions, settings, send)     # the same thread, right after

Reaper. A running job's heartbeat (`job.heartbeat_at`) is refreshed every `job_heartbeat_s` by a thread of the
process that trains it (workers/jobrun.py), so a job silent for `job_timeout_s` has lost that process (killed,
or silenced: stopped, cut off from the database). It is put back on its queue if it has had fewer than
`max_attempts` runs, failed with the reason otherwise, and cancelled if a cancel was asked for. A job whose
process beats but which reported no progress for `job_stall_s` is stuck (a hung training): it is failed with
that reason, and its worker, should it wake, finds it no longer its own.

Sweeper. A job queued with no claim for `republish_after_s` since its last message may have none (the API or
the reaper died between commit and send, or the broker lost it): it is sent again. A duplicate message is
harmless: a job is claimed once per run (service/jobstate.py).

Every change is a conditional UPDATE naming the run (attempt) it judged, so several workers at once are harmless.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service import jobstate
from service.models import Job, JobStatus, utcnow
from service.settings import Settings

log = logging.getLogger("workers.reaper")


def reap(sessions: sessionmaker[Session], settings: Settings, send: Callable[[Job], None]) -> dict[str, list[int]]:
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.job_timeout_s)
    out: dict[str, list[int]] = {"requeued": [], "failed": [], "cancelled": [], "stalled": []}
    with sessions() as s:
        silent = s.scalars(select(Job).where(Job.status == JobStatus.running, Job.heartbeat_at < cutoff)).all()
        for job in silent:
            lost = (f"the worker running it ({job.worker}) stopped: no heartbeat for "
                    f"{settings.job_timeout_s:g} s")
            if job.cancel_requested:
                done, outcome = jobstate.end(s, job.id, job.attempts, JobStatus.cancelled, "cancelled on request",
                                             stale_before=("heartbeat_at", cutoff)), "cancelled"
            elif job.attempts < settings.max_attempts:
                done, outcome = jobstate.requeue(s, job.id, job.attempts, lost, stale_before=cutoff), "requeued"
            else:
                error = f"{lost}, after {job.attempts} attempt(s) (max_attempts {settings.max_attempts})"
                done, outcome = jobstate.end(s, job.id, job.attempts, JobStatus.failed, error,
                                             stale_before=("heartbeat_at", cutoff)), "failed"
            s.commit()
            if not done:
                continue  # it beat, or another reaper got there first
            out[outcome].append(job.id)
            log.warning("job %s: %s; %s (attempt %s of %s)", job.id, lost, outcome, job.attempts,
                        settings.max_attempts)
            if outcome == "requeued":
                send(job)  # after the commit; a lost send is the sweeper's to repair
        if settings.job_stall_s:
            out["stalled"] = _fail_stalled(s, settings, now)
    return out


def _fail_stalled(s: Session, settings: Settings, now) -> list[int]:
    cutoff = now - timedelta(seconds=settings.job_stall_s)
    stalled = s.scalars(select(Job).where(Job.status == JobStatus.running, Job.progress_at < cutoff)).all()
    ended = []
    for job in stalled:
        error = (f"no progress for {settings.job_stall_s:g} s (last: {(job.progress or {}).get('stage')}); "
                 f"the training on {job.worker} seems stuck")
        if jobstate.end(s, job.id, job.attempts, JobStatus.failed, error, stale_before=("progress_at", cutoff)):
            ended.append(job.id)
            log.warning("job %s: %s; failed", job.id, error)
        s.commit()
    return ended


def sweep(sessions: sessionmaker[Session], settings: Settings, send: Callable[[Job], None]) -> list[int]:
    """Send again every job queued and unclaimed for `republish_after_s` since its last message."""
    cutoff = utcnow() - timedelta(seconds=settings.republish_after_s)
    sent = []
    with sessions() as s:
        for job in jobstate.unpublished(s, cutoff):
            ok = jobstate.mark_published(s, job)
            s.commit()
            if ok:
                send(job)
                sent.append(job.id)
    if sent:
        log.warning("re-sent %d queued job(s) nobody claimed within %g s: %s", len(sent),
                    settings.republish_after_s, sent)
    return sent
