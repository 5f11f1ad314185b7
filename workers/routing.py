"""Grow jobs of a busy collective give their worker slot back: growth of one collective never blocks another.

    if not routing.take_turn(ctx, job_id): return      # deferred: queued again, sent after grow_lease_poll_s

Every grow-capable worker consumes the one `grow` queue. A grow job whose collective is busy used to wait
inside its worker slot for the collective's lease, so two jobs of collective A on two workers left none for
collective B. Now, before claiming, a job checks whether it is its collective's turn:
- no earlier grow job of the same collective is still queued (jobs of one collective run in the order they
  were made), and
- no earlier one is running, unless the lease it holds has lapsed (its worker went silent: the reaper's case,
  workers/grow.py redoes the work on the newer head), and
- the lease is free, lapsed, or this job's own.
If not, the job is left queued (never claimed, so it spends no attempt), notes "waiting for the collective"
and its message is sent again with a countdown; the worker takes the next message, maybe another collective's.
After a claim the lease (workers/lease.py) still decides: the turn check is advice that keeps slots free,
the lease is what makes two growths of one collective impossible.
"""
from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import jobstate
from service.models import GrowLease, Job, JobKind, JobStatus, Task, utcnow
from workers.context import WorkerContext

log = logging.getLogger("workers.routing")
WAITING = "waiting for the collective"


def is_turn(s: Session, job_id: int) -> bool | None:
    """True: the job may start now; False: its collective is busy; None: the job is not queued any more."""
    job = s.get(Job, job_id)
    if job is None or job.status != JobStatus.queued:
        return None
    collective_id = s.scalar(select(Task.collective_id).where(Task.id == job.task_id))
    lease = s.get(GrowLease, collective_id)
    lapsed = lease is not None and lease.expires_at < utcnow()
    earlier = s.execute(
        select(Job.id, Job.status).join(Task, Task.id == Job.task_id)
        .where(Task.collective_id == collective_id, Job.kind == JobKind.task, Job.id < job_id,
               Job.status.in_([JobStatus.queued, JobStatus.running]))).all()
    for other_id, status in earlier:
        if status == JobStatus.queued:
            return False
        if not (lapsed and lease.job_id == other_id):
            return False
    return lease is None or lapsed or lease.job_id == job_id


def take_turn(ctx: WorkerContext, job_id: int) -> bool:
    """Whether to run the job now; when not, it is deferred: left queued and sent again in grow_lease_poll_s.
    A caller running jobs itself (tests: ctx.send None) cannot defer: it runs the job, and the lease makes it
    wait for a busy collective as before."""
    if ctx.send is None:
        return True
    with ctx.sessions() as s:
        turn = is_turn(s, job_id)
        if turn is not False:
            return bool(turn)  # None: no longer queued (cancelled, a duplicate message): nothing to run
        jobstate.defer(s, job_id, {"stage": WAITING, "fraction": 0.0})
        s.commit()
        ctx.send(s.get(Job, job_id), ctx.settings.grow_lease_poll_s)
    log.info("grow job %s: its collective is busy; sent again in %g s", job_id, ctx.settings.grow_lease_poll_s)
    return False
