"""Jobs from the API's side: commit the row, then send its id; cancel; idempotency; the public view.

    job = Job(kind=JobKind.task, params={...})
    submit(session, enqueue, job)                    # commit first, message second
    cancel(session, job)                             # queued → cancelled now; running → asks the worker
    with idempotent(session, JobKind.task, key, scope, request_hash) as earlier: ...

Every status change goes through service/jobstate.py. A crash between the commit and the message leaves
the job queued with no message: the workers' sweeper (workers/reaper.py) sends it again.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi import Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import jobstate
from service.artifacts import Store
from service.models import ApiKey, Job, JobKind, JobStatus
from service.problems import Problem
from service.registry import artifact_in_use
from service.schemas import JobProgress, JobPublic
from service.uploads import StagedUpload

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
        earlier = find_by_key(session, JobKind(job.kind), job.idempotency_key, job.idempotency_scope or "")
        if earlier is not None:
            raise DuplicateRequest(earlier) from None
        raise
    try:
        enqueue(job)
    except Exception as e:  # the broker is down: the client is told, and the job does not wait for the sweeper
        log.exception("could not publish job %s", job.id)
        jobstate.fail_unsent(session, job.id, f"could not queue the job: {type(e).__name__}")
        session.commit()
        raise Problem(503, "Queue unavailable", "the job queue cannot be reached; try again later",
                      type="queue-unavailable", headers={"Retry-After": "10"}) from e
    return job


def cancel(session: Session, job: Job) -> Job:
    """Cancel a queued job at once; ask a running one to stop (its worker checks between batches)."""
    if jobstate.cancel(session, job.id) is None:
        session.rollback()
        session.refresh(job)
        raise Problem(409, "Job already finished", f"job {job.id} is {JobStatus(job.status).value}; it cannot be "
                      "cancelled", type="job-finished")
    session.commit()
    session.refresh(job)
    return job


# ----------------------------------------------------------------------------- idempotency


def key_scope(key: ApiKey | None) -> str:
    """Whose Idempotency-Keys these are: one API key's (auth on), or everyone's (auth off)."""
    return f"key:{key.id}" if key is not None else ""


def request_hash(*parts: object) -> str:
    """A fingerprint of a request: its form fields and the sha256 of each uploaded file."""
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def find_by_key(session: Session, kind: JobKind, key: str | None, scope: str = "") -> Job | None:
    """The job an earlier request with this Idempotency-Key (of this API key) created, if any."""
    if not key:
        return None
    return session.scalars(select(Job).where(Job.kind == kind, Job.idempotency_scope == scope,
                                             Job.idempotency_key == key)).first()


def replay(earlier: Job, digest: str) -> Job:
    """The earlier job, if this request is the same one again; 422 if the key came with another request."""
    if earlier.request_hash is not None and earlier.request_hash != digest:
        raise Problem(422, "Idempotency-Key reused", f"this Idempotency-Key was used for another request (job "
                      f"{earlier.id}); a key may only be reused to retry the same request",
                      type="idempotency-key-reused")
    return earlier


_in_flight: set[tuple[str, str, str]] = set()
_in_flight_lock = threading.Lock()


@contextmanager
def key_in_flight(kind: JobKind, key: str | None, scope: str) -> Iterator[None]:
    """409 while a request with the same key is still being handled in this process (the IETF draft's
    "request in flight"); across API processes the unique (kind, scope, key) constraint settles the race."""
    if not key:
        yield
        return
    entry = (kind.value, scope, key)
    with _in_flight_lock:
        if entry in _in_flight:
            raise Problem(409, "Request in progress", "a request with this Idempotency-Key is still being "
                          "processed; retry when it has answered", type="idempotency-key-in-flight",
                          headers={"Retry-After": "1"})
        _in_flight.add(entry)
    try:
        yield
    finally:
        with _in_flight_lock:
            _in_flight.discard(entry)


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
        device=job.device,
        links=job_links(job),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def accepted(response: Response, job: Job) -> JobPublic:
    """The 202 answer to a request that made (or found) a job."""
    response.status_code = 202
    response.headers["Location"] = f"/jobs/{job.id}"
    return job_public(job)


def _store(store: Store, upload: bytes | StagedUpload | None) -> str | None:
    if upload is None:
        return None
    return store.adopt(upload.path, upload.sha256) if isinstance(upload, StagedUpload) else store.put(upload)


@contextmanager
def stored_uploads(session: Session, store: Store,
                   *uploads: bytes | StagedUpload | None) -> Iterator[list[str | None]]:
    """Put uploads (bytes, or files staged on disk) in the store; if the request then fails, take back those
    no row refers to."""
    digests = [_store(store, u) for u in uploads]
    try:
        yield digests
    except BaseException:
        session.rollback()
        for d in digests:
            if d is not None and not artifact_in_use(session, d):
                store.delete(d)
        raise
