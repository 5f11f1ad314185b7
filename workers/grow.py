"""Growing a collective by one task: the work behind POST /tasks.

    run_task_job(ctx, job_id)     # what the Celery task calls; tests call it directly

One version at a time per collective, and never a lost update:
- PostgreSQL: the collective row is locked (SELECT ... FOR UPDATE) from reading the head version until
  the new version is committed, so a second grower waits for the first;
- everywhere (SQLite too): the new version's number must be head + 1 when it is written, else the
  work is redone on the newer head; the unique (collective, number) pair backs this up. The embedded
  default runs one worker on the grow queue, so on SQLite the retry is the exception.
"""
from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from learngene import Collective, InputSpec, Learngene, load_dataset
from service.models import Collective as CollectiveRow
from service.models import CollectiveVersion, Job, JobStatus, Learngene as LearngeneRow, Task, utcnow
from service.registry import head_version
from service.uploads import limits
from workers.context import WorkerContext
from workers.jobrun import JobFailed, Reporter, json_safe, run_claimed

log = logging.getLogger("workers.grow")
MAX_ATTEMPTS = 3


class HeadMoved(Exception):
    """Another grower committed a version while this one trained (only possible without row locks)."""


def run_task_job(ctx: WorkerContext, job_id: int, worker: str | None = None) -> None:
    run_claimed(ctx, job_id, worker, lambda job, reporter: _grow_on_head(ctx, job, reporter))


def _grow_on_head(ctx: WorkerContext, job: Job, reporter: Reporter) -> None:
    for attempt in range(MAX_ATTEMPTS):
        try:
            return _grow(ctx, job, reporter)
        except HeadMoved:
            log.warning("job %s: the collective moved on while training; retrying (%d)", job.id, attempt + 1)
    raise JobFailed("the collective kept changing while this task was learned; try again")


def _lock_collective(session: Session, collective_id: int) -> CollectiveRow:
    # FOR UPDATE is a row lock on PostgreSQL and is left out by SQLAlchemy on SQLite.
    return session.scalars(select(CollectiveRow).where(CollectiveRow.id == collective_id).with_for_update()).one()


def _grow(ctx: WorkerContext, job: Job, reporter: Reporter) -> None:
    store = ctx.store
    with ctx.sessions() as s:
        task = s.get(Task, job.task_id)
        reporter.progress({"stage": "waiting for the collective", "fraction": 0.0})
        collective = _lock_collective(s, task.collective_id)
        head = head_version(s, collective.id)
        reporter.progress({"stage": "loading", "fraction": 0.0})
        if head is not None:
            net = Collective.from_bytes(store.get(head.weights_sha256))
        else:
            spec = InputSpec(channels=collective.channels, size=collective.size)
            net = Collective.create(spec, preset=collective.preset, seed=collective.seed)
        ds = load_dataset(store.get(task.sha256), filename=task.filename, limits=limits(ctx.settings))
        report = net.learn_task(ds, epochs=task.epochs, progress=reporter.progress,
                                should_stop=reporter.should_stop, name=task.name)
        reporter.progress({"stage": "extracting learngene", "fraction": 1.0})
        gene = Learngene.extract(net, method=ctx.settings.extract_method, k=ctx.settings.extract_k)
        # Artifacts before rows: a row never points at a file that is not there.
        net_sha, gene_sha = store.put(net.to_bytes()), store.put(gene.to_bytes())
        try:
            _record(s, job, task, collective, head, net, net_sha, gene, gene_sha, report)
            s.commit()  # also releases the row lock
        except IntegrityError as e:  # the unique (collective, number) pair caught a race
            s.rollback()
            raise HeadMoved() from e


def _record(s: Session, job: Job, task: Task, collective: CollectiveRow, head: CollectiveVersion | None,
            net: Collective, net_sha: str, gene: Learngene, gene_sha: str, report: dict) -> None:
    """Write the new version, its learngene, the task's results and the job's end, in one transaction."""
    latest = head_version(s, collective.id)
    if (latest.id if latest else None) != (head.id if head else None):
        s.rollback()
        raise HeadMoved()
    info = json_safe(net.info())
    version = CollectiveVersion(
        collective_id=collective.id, number=head.number + 1 if head else 1, parent_id=head.id if head else None,
        widths=info["widths"], parameters=int(info["parameters"]), label_space=info["label_space"],
        accuracy_matrix=info["accuracy_matrix"], threshold=info["threshold"], weights_sha256=net_sha,
        info={k: info.get(k) for k in ("average_accuracy", "forgetting", "growth", "tasks", "score", "preset",
                                       "held_back_classes")},
    )
    s.add(version)
    s.flush()
    gene_info = json_safe(gene.info())
    gene_row = LearngeneRow(
        collective_version_id=version.id, method=gene.method, layers=list(gene.layers),
        scores=gene_info["scores"], grad_stats=gene_info["grad_stats"], candidates=gene_info["candidates"],
        parameters=int(gene.parameters), channels=gene.spec.channels, size=gene.spec.size,
        info={k: v for k, v in gene_info.items() if k not in ("scores", "grad_stats", "candidates")},
        weights_sha256=gene_sha,
    )
    s.add(gene_row)
    s.flush()
    report, now = json_safe(report), utcnow()
    task.status, task.finished_at, task.collective_version_id = JobStatus.succeeded, now, version.id
    task.new_classes, task.open_world = report.get("new_classes"), report.get("open_world")
    task.accuracy, task.accuracy_row = report.get("accuracy"), report.get("accuracy_row")
    row = s.get(Job, job.id)
    row.status, row.finished_at, row.heartbeat_at = JobStatus.succeeded, now, now
    row.progress = {**(row.progress or {}), "stage": "done", "fraction": 1.0}
    row.result = {"task_id": task.id, "collective": collective.name, "collective_version": version.number,
                  "learngene_id": gene_row.id}
