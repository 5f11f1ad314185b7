"""Jobs: the asynchronous work behind POST /tasks and POST /individuals.

    GET  /jobs/{id}          status, progress (stage, epoch, loss), error, result ids, links;
                             Retry-After while queued or running
    POST /jobs/{id}/cancel   queued: cancelled at once; running: the worker stops at its next check
    GET  /jobs               newest first, ?status=&kind=
    GET  /jobs/{id}/events   server-sent events: status, progress, end (service/events.py)

    curl http://127.0.0.1:8000/jobs/1
    curl -N http://127.0.0.1:8000/jobs/1/events
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from service.auth import WRITE
from service.deps import RowId, SessionDep, SettingsDep
from service.events import HEADERS, JOB_EVENT_SCHEMA, EventStream, Snapshot, job_events
from service.jobs import cancel, job_public
from service.models import Job, JobKind, JobStatus
from service.pagination import PageDep, paginate
from service.problems import ProblemDetail, not_found
from service.registry import get_or_404
from service.schemas import JobPublic, Page

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("", response_model=Page[JobPublic], summary="List jobs")
def list_jobs(session: SessionDep, page: PageDep, status: JobStatus | None = None,
              kind: JobKind | None = None) -> Page[JobPublic]:
    """Jobs newest first, filtered by status and kind; pages of `limit` rows, `next_cursor` for the next."""
    stmt = select(Job)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if kind is not None:
        stmt = stmt.where(Job.kind == kind)
    rows, cursor = paginate(session, stmt, Job.id, page)
    return Page[JobPublic](items=[job_public(r[0]) for r in rows], limit=page.limit, next_cursor=cursor)


@router.get("/{job_id}", response_model=JobPublic, responses={404: {"model": ProblemDetail}}, summary="Get a job")
def get_job(job_id: RowId, session: SessionDep, settings: SettingsDep, response: Response) -> JobPublic:
    """Status, progress (stage, epoch, loss, fraction), error, result ids and links. While the job is queued
    or running the answer carries `Retry-After`: poll no faster (or follow `/jobs/{id}/events`)."""
    job = get_or_404(session, Job, job_id, "job")
    if not JobStatus(job.status).final:
        response.headers["Retry-After"] = str(settings.retry_after_s)
    return job_public(job)


@router.post("/{job_id}/cancel", status_code=202, response_model=JobPublic, dependencies=[WRITE],
             summary="Cancel a job",
             responses={401: {"model": ProblemDetail}, 403: {"model": ProblemDetail}, 404: {"model": ProblemDetail},
                        409: {"model": ProblemDetail}})
def cancel_job(job_id: RowId, session: SessionDep) -> JobPublic:
    """A queued job is cancelled at once; a running one is asked to stop and its worker ends it at its next
    check (`cancel_requested: true` until then). 409 when the job has already finished. Needs a write key."""
    return job_public(cancel(session, get_or_404(session, Job, job_id, "job")))


@router.get("/{job_id}/events", response_class=EventStream, summary="Follow a job (server-sent events)", responses={
    200: {"content": {"text/event-stream": {"schema": JOB_EVENT_SCHEMA}},
          "description": "server-sent events `status`, `progress` and, once the job is final, `end`; each `data:` "
                         "is the job (JobPublic JSON), each event's `id:` is the job's revision (send it back as "
                         "Last-Event-ID to resume)"},
    404: {"model": ProblemDetail}, 503: {"model": ProblemDetail}})
async def job_events_stream(job_id: RowId, request: Request,
                            last_event_id: Annotated[str | None, Header(
                                alias="Last-Event-ID", max_length=100,
                                description="resume: the last id received (an id this stream never sent, as any "
                                            "other value, starts it afresh, as the SSE standard has it)")] = None,
                            ) -> EventStream:
    """A `text/event-stream` of the job: its state on connect, then each change of status or progress, then
    `end` and the stream closes; `Last-Event-ID` resumes after the last event received. Lighter than polling
    `GET /jobs/{id}`; `curl -N` shows it live. 503 with Retry-After when too many streams are open."""
    sessions, signals = request.app.state.sessions, request.app.state.job_signals

    def load() -> Snapshot | None:
        # A session per read: none is held open (nor a SQLite connection) for the life of the stream.
        with sessions() as session:
            job = session.get(Job, job_id)
            return (job.revision, job_public(job)) if job is not None else None

    first = await run_in_threadpool(load)
    if first is None:  # a 404 problem before any byte of the stream
        raise not_found("job", job_id)
    resume = int(last_event_id) if last_event_id and last_event_id.isascii() and last_event_id.isdigit() else None
    stream = job_events(first, load, request.is_disconnected, signals.waiter(job_id), last_event_id=resume)
    return EventStream(signals.held(stream), headers=HEADERS)
