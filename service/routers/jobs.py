"""Jobs: the asynchronous work behind POST /tasks and POST /individuals.

    GET  /jobs/{id}          status, progress (stage, epoch, loss), error, result ids, links;
                             Retry-After while queued or running
    POST /jobs/{id}/cancel   queued: cancelled at once; running: the worker stops at its next check
    GET  /jobs               newest first, ?status=&kind=

    curl http://127.0.0.1:8000/jobs/1
"""
from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from service.auth import WRITE
from service.deps import RowId, SessionDep, SettingsDep
from service.jobs import cancel, job_public
from service.models import Job, JobKind, JobStatus
from service.pagination import PageDep, paginate
from service.problems import ProblemDetail
from service.registry import get_or_404
from service.schemas import JobPublic, Page

router = APIRouter(prefix="/jobs", tags=["jobs"])



@router.get("", response_model=Page[JobPublic])
def list_jobs(session: SessionDep, page: PageDep, status: JobStatus | None = None,
              kind: JobKind | None = None) -> Page[JobPublic]:
    stmt = select(Job)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if kind is not None:
        stmt = stmt.where(Job.kind == kind)
    rows, cursor = paginate(session, stmt, Job.id, page)
    return Page[JobPublic](items=[job_public(r[0]) for r in rows], limit=page.limit, next_cursor=cursor)


@router.get("/{job_id}", response_model=JobPublic, responses={404: {"model": ProblemDetail}})
def get_job(job_id: RowId, session: SessionDep, settings: SettingsDep, response: Response) -> JobPublic:
    job = get_or_404(session, Job, job_id, "job")
    if not JobStatus(job.status).final:
        response.headers["Retry-After"] = str(settings.retry_after_s)
    return job_public(job)


@router.post("/{job_id}/cancel", status_code=202, response_model=JobPublic, dependencies=[WRITE],
             responses={401: {"model": ProblemDetail}, 403: {"model": ProblemDetail}, 404: {"model": ProblemDetail},
                        409: {"model": ProblemDetail}})
def cancel_job(job_id: RowId, session: SessionDep) -> JobPublic:
    return job_public(cancel(session, get_or_404(session, Job, job_id, "job")))
