"""Tasks: uploaded datasets that grow a collective by one version each.

    POST /tasks        multipart file (+ name, collective, epochs)  → 202 job, Location: /jobs/{id}
    GET  /tasks        newest first, ?collective=&status=&limit=&cursor=
    GET  /tasks/{id}   classes, open-world report, accuracy after training

    curl -F file=@task1.npz -F name=digits http://127.0.0.1:8000/tasks
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from sqlalchemy import func, select

from learngene.data import InputSpec
from service.auth import WriteKey
from service.deps import CollectiveFilter, EnqueueDep, IdempotencyKey, RowId, SessionDep, SettingsDep, StoreDep
from service.jobs import (DuplicateRequest, accepted, find_by_key, key_in_flight, key_scope, replay, request_hash,
                          stored_uploads, submit)
from service.models import Collective, CollectiveVersion, Job, JobKind, JobStatus, Learngene, Task
from service.pagination import PageDep, paginate
from service.problems import Problem, ProblemDetail, not_found
from service.registry import ensure_collective
from service.schemas import JobPublic, Page, TaskCreate, TaskJobPublic, TaskPublic
from service.uploads import DATASET_FILE, parse_dataset, stage_upload

router = APIRouter(prefix="/tasks", tags=["tasks"])
ERRORS = {code: {"model": ProblemDetail} for code in (409, 413, 422, 429, 503)}
AUTH_ERRORS = {**ERRORS, 401: {"model": ProblemDetail}, 403: {"model": ProblemDetail}}


@router.post("", status_code=202, response_model=TaskJobPublic, responses=AUTH_ERRORS, summary="Upload a task")
def create_task(form: Annotated[TaskCreate, Form()], file: Annotated[UploadFile, File(description=DATASET_FILE)],
                key: WriteKey, session: SessionDep, settings: SettingsDep, store: StoreDep, enqueue: EnqueueDep,
                response: Response, idempotency_key: IdempotencyKey = None) -> JobPublic:
    """Upload a labelled dataset (.npz with `x` and `y`, or a .zip of class folders) to grow a collective by one
    version. The dataset is checked now (422 naming what is wrong); the growth and the learngene extraction run
    as a job: 202 with the job and `Location: /jobs/{id}`. A file whose content already grew (or is growing) this
    collective answers 409 naming that task, unless `allow_duplicate=true`. Needs a write key."""
    scope = key_scope(key)
    with key_in_flight(JobKind.task, idempotency_key, scope):
        staged = stage_upload(file, settings, store)
        try:
            fingerprint = request_hash("task", form.model_dump(), file.filename, staged.sha256)
            if (earlier := find_by_key(session, JobKind.task, idempotency_key, scope)) is not None:
                return accepted(response, replay(earlier, fingerprint))
            ds = parse_dataset(staged.path, file.filename, settings, min_per_class=settings.task_min_per_class)
            name = form.collective or settings.default_collective
            if not form.allow_duplicate:
                _refuse_duplicate(session, name, staged.sha256)
            with stored_uploads(session, store, staged) as (digest,):
                spec = InputSpec(channels=ds.channels, size=min(ds.size, settings.max_input_size))
                collective = ensure_collective(session, name, spec, settings.preset, settings.seed)
                counts = ds.class_counts()
                task = Task(
                    name=form.name or file.filename or f"task-{digest[:8]}", collective_id=collective.id,
                    sha256=digest, filename=file.filename, classes=list(ds.class_names),
                    class_counts=[int(c) for c in counts], num_samples=len(ds), channels=ds.channels, size=ds.size,
                    epochs=form.epochs,
                )
                session.add(task)
                session.flush()
                job = Job(kind=JobKind.task, task_id=task.id, idempotency_key=idempotency_key,
                          idempotency_scope=scope, request_hash=fingerprint, params={"task_id": task.id})
                submit(session, enqueue, job)
        except DuplicateRequest as e:  # the same Idempotency-Key, sent twice at once (another API process)
            return accepted(response, replay(e.job, fingerprint))
        finally:
            staged.discard()
    return accepted(response, job)


def _refuse_duplicate(session, collective: str, digest: str) -> None:
    """409 when a task with these very bytes (sha256 `digest`) grew (or is growing) this collective: a second
    upload is usually a mistake, and learning the same data twice says nothing new."""
    earlier = session.scalars(
        select(Task).join(Collective, Task.collective_id == Collective.id)
        .where(Collective.name == collective, Task.sha256 == digest,
               Task.status.in_([JobStatus.queued, JobStatus.running, JobStatus.succeeded]))
        .order_by(Task.id)).first()
    if earlier is not None:
        raise Problem(409, "Duplicate task", f"this file's content already grew collective {collective!r} as task "
                      f"{earlier.id} ({earlier.name!r}, {JobStatus(earlier.status).value}); send allow_duplicate=true "
                      "to learn it again", type="duplicate-task", task_id=earlier.id,
                      links={"task": f"/tasks/{earlier.id}"})


def _task_rows():
    """Tasks with the names and numbers their public view needs, in one query."""
    learngene_id = (select(func.min(Learngene.id)).where(Learngene.collective_version_id == Task.collective_version_id)
                    .scalar_subquery())
    job_id = select(func.max(Job.id)).where(Job.task_id == Task.id).scalar_subquery()
    return (
        select(Task, Collective.name, CollectiveVersion.number, learngene_id, job_id)
        .join(Collective, Task.collective_id == Collective.id)
        .outerjoin(CollectiveVersion, Task.collective_version_id == CollectiveVersion.id)
    )


def task_public(row) -> TaskPublic:
    task, collective, version, learngene_id, job_id = row
    return TaskPublic(
        id=task.id, name=task.name, collective=collective, status=JobStatus(task.status).value,
        filename=task.filename, sha256=task.sha256, classes=task.classes, class_counts=task.class_counts,
        num_samples=task.num_samples, channels=task.channels, size=task.size, epochs=task.epochs,
        new_classes=task.new_classes, open_world=task.open_world, accuracy=task.accuracy,
        accuracy_row=task.accuracy_row, collective_version=version, learngene_id=learngene_id, job_id=job_id,
        created_at=task.created_at, finished_at=task.finished_at,
    )


@router.get("", response_model=Page[TaskPublic], summary="List tasks")
def list_tasks(session: SessionDep, page: PageDep, collective: CollectiveFilter = None,
               status: JobStatus | None = None) -> Page[TaskPublic]:
    """Uploaded tasks newest first, filtered by collective and status; pages of `limit` rows, `next_cursor` for
    the next."""
    stmt = _task_rows()
    if collective is not None:
        stmt = stmt.where(Collective.name == collective)
    if status is not None:
        stmt = stmt.where(Task.status == status)
    rows, cursor = paginate(session, stmt, Task.id, page)
    return Page[TaskPublic](items=[task_public(r) for r in rows], limit=page.limit, next_cursor=cursor)


@router.get("/{task_id}", response_model=TaskPublic, responses={404: {"model": ProblemDetail}}, summary="Get a task")
def get_task(task_id: RowId, session: SessionDep) -> TaskPublic:
    """Its classes and counts, status, the open-world report (which classes were new), the accuracy after
    training, and the collective version and learngene it made."""
    row = session.execute(_task_rows().where(Task.id == task_id)).first()
    if row is None:
        raise not_found("task", task_id)
    return task_public(row)
