"""Jobs from the API's side: commit the row, then send its id; cancel; render the public view.

    job = Job(kind=JobKind.task, params={...})
    submit(session, enqueue, job)                    # commit first, message second
    cancel(session, job)                             # queued → cancelled now; running → asks the worker
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi import Response
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.artifacts import ArtifactStore
from service.models import Job, JobKind, JobStatus, Task, utcnow
from service.problems import Problem
from service.registry import artifact_in_use
from service.schemas import JobProgress, JobPublic

log = logging.getLogger("service.jobs")
Enqueue = Callable[[Job], None]


class DuplicateRequest(Exception):
    """A concurrent request with the same Idempotency-Key committed first; `job` is its job."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} has this idempotency key")
        self.job = job


def submit(session: Session, enqueue: Enqueue, job: Job) -> Job:
    """Commit `job` (and the rows made with it), then publish it. The worker never sees an uncommitted job."""
    session.add(job)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        if (earlier := find_by_key(session, JobKind(job.kind), job.idempotency_key)) is not None:
            raise DuplicateRequest(earlier) from None
        raise
    try:
        enqueue(job)
    except Exception as e:  # the broker is down: the job must not stay queued with no message behind it
        log.exception("could not publish job %s", job.id)
        mark_final(session, job, JobStatus.failed, error=f"could not queue the job: {type(e).__name__}")
        raise Problem(503, "Queue unavailable", "the job queue cannot be reached; try again later",
                      type="queue-unavailable", headers={"Retry-After": "10"}) from e
    return job


def mark_final(session: Session, job: Job, status: JobStatus, error: str | None = None) -> None:
    job.status, job.error, job.finished_at = status, error, utcnow()
    if job.task_id is not None:
        session.execute(update(Task).where(Task.id == job.task_id).values(status=status, finished_at=utcnow()))
    session.commit()


def cancel(session: Session, job: Job) -> Job:
    """Cancel a queued job at once; ask a running one to stop (its worker checks between batches)."""
    if JobStatus(job.status).final:
        raise Problem(409, "Job already finished", f"job {job.id} is {job.status.value}; it cannot be cancelled",
                      type="job-finished")
    # The conditional update decides the race with a worker that claims the job at this very moment.
    claimed = session.execute(
        update(Job).where(Job.id == job.id, Job.status == JobStatus.queued)
        .values(status=JobStatus.cancelled, finished_at=utcnow(), cancel_requested=True)
    ).rowcount
    if claimed:
        if job.task_id is not None:
            session.execute(update(Task).where(Task.id == job.task_id)
                            .values(status=JobStatus.cancelled, finished_at=utcnow()))
    else:
        session.execute(update(Job).where(Job.id == job.id).values(cancel_requested=True))
    session.commit()
    session.refresh(job)
    return job


def job_links(job: Job) -> dict[str, str]:
    links = {"self": f"/jobs/{job.id}"}
    if not JobStatus(job.status).final:
        links["cancel"] = f"/jobs/{job.id}/cancel"
    result = job.result or {}
    if job.task_id is not None:
        links["task"] = f"/tasks/{job.task_id}"
    if result.get("learngene_id") is not None:
        links["learngene"] = f"/learngenes/{result['learngene_id']}"
    if result.get("individual_id") is not None:
        links["individual"] = f"/individuals/{result['individual_id']}"
        links["predictions"] = f"/individuals/{result['individual_id']}/predictions"
    return links


def job_public(job: Job) -> JobPublic:
    return JobPublic(
        id=job.id,
        kind=JobKind(job.kind).value,
        task_id=job.task_id,
        status=JobStatus(job.status).value,
        progress=JobProgress(**(job.progress or {})),
        error=job.error,
        result=job.result,
        cancel_requested=job.cancel_requested,
        attempts=job.attempts,
        worker=job.worker,
        links=job_links(job),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def find_by_key(session: Session, kind: JobKind, key: str | None) -> Job | None:
    """The job an earlier request with this Idempotency-Key created, if any."""
    if not key:
        return None
    return session.scalars(select(Job).where(Job.kind == kind, Job.idempotency_key == key)).first()


def accepted(response: Response, job: Job) -> JobPublic:
    """The 202 answer to a request that made (or found) a job."""
    response.status_code = 202
    response.headers["Location"] = f"/jobs/{job.id}"
    return job_public(job)


@contextmanager
def stored_uploads(session: Session, store: ArtifactStore, *blobs: bytes | None) -> Iterator[list[str | None]]:
    """Put upload bytes in the store; if the request then fails, take back those no row refers to."""
    digests = [store.put(b) if b is not None else None for b in blobs]
    try:
        yield digests
    except BaseException:
        session.rollback()
        for d in digests:
            if d is not None and not artifact_in_use(session, d):
                store.delete(d)
        raise
