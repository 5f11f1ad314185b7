"""Growing a collective by one task: the work behind POST /tasks.

    run_task_job(ctx, job_id)     # what the Celery task calls; tests call it directly

One version at a time per collective, and never a lost update, with no transaction open while it trains:
- a lease row per collective (workers/lease.py), taken and renewed in short transactions; a grow job whose
  collective is busy is not claimed but sent again later (workers/routing.py), so its worker slot serves
  other collectives meanwhile; uploads and reads never wait;
- everywhere: the new version's number must be head + 1 when it is written, else the work is redone on the
  newer head (only after a lease expired under a silent holder); the unique (collective, number) pair backs
  this up;
- the final write names the job run's attempt (service/jobstate.py): a run that lost its job writes nothing.
"""
from __future__ import annotations

import logging
import time

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from learngene import Cancelled, Collective, InputSpec, Learngene, load_dataset
from learngene.distributed import ddp_processes, learn_task_parallel
from service import jobstate
from service.models import Collective as CollectiveRow
from service.models import CollectiveVersion, Job, Learngene as LearngeneRow, Task
from service.registry import head_version
from service.uploads import limits
from workers import lease, routing
from workers.context import WorkerContext
from workers.jobrun import JobFailed, Reporter, json_safe, run_claimed

log = logging.getLogger("workers.grow")
MAX_ATTEMPTS = 3
TRAINING, EXTRACTION = (0.0, 0.8), (0.8, 0.99)  # shares of the job's progress fraction


class HeadMoved(Exception):
    """Another grower committed a version while this one trained (only after a lease expired)."""


def run_task_job(ctx: WorkerContext, job_id: int, worker: str | None = None) -> None:
    if not routing.take_turn(ctx, job_id):  # its collective is busy: deferred, the slot is free for others
        return
    run_claimed(ctx, job_id, worker, lambda job, reporter: _grow_on_head(ctx, job, reporter))


def _grow_on_head(ctx: WorkerContext, job: Job, reporter: Reporter) -> None:
    with ctx.sessions() as s:
        collective_id = s.get(Task, job.task_id).collective_id
    try:
        for attempt in range(MAX_ATTEMPTS):
            _hold_lease(ctx, collective_id, job, reporter)  # again after HeadMoved: the lease had lapsed
            try:
                return _grow(ctx, job, reporter)
            except HeadMoved:
                log.warning("job %s: the collective moved on while training; retrying (%d)", job.id, attempt + 1)
        raise JobFailed("the collective kept changing while this task was learned; try again")
    finally:
        reporter.on_beat.clear()
        lease.release(ctx.sessions, collective_id, job.id, reporter.attempt)


def _hold_lease(ctx: WorkerContext, collective_id: int, job: Job, reporter: Reporter) -> None:
    """Wait for the collective's lease (cancellable), then keep it renewed with the job's heartbeat."""
    ttl = ctx.settings.job_timeout_s
    while not lease.acquire(ctx.sessions, collective_id, job.id, reporter.attempt, ttl):
        reporter.progress({"stage": "waiting for the collective", "fraction": 0.0})
        if reporter.should_stop():
            raise Cancelled("cancelled while waiting for the collective")
        time.sleep(ctx.settings.grow_lease_poll_s)
    reporter.on_beat[:] = [lambda: lease.renew(ctx.sessions, collective_id, job.id, reporter.attempt, ttl)]


def _grow(ctx: WorkerContext, job: Job, reporter: Reporter) -> None:
    store = ctx.store
    with ctx.sessions() as s:  # short: read what training needs, then let go of the connection
        task = s.get(Task, job.task_id)
        collective = s.get(CollectiveRow, task.collective_id)
        head = head_version(s, collective.id)
    reporter.progress({"stage": "loading", "fraction": 0.0})
    if head is not None:
        net = Collective.from_bytes(store.get(head.weights_sha256))
    else:
        spec = InputSpec(channels=collective.channels, size=collective.size)
        net = Collective.create(spec, preset=collective.preset, seed=collective.seed)
    ds = load_dataset(store.get(task.sha256), filename=task.filename, limits=limits(ctx.settings))
    # One process, or several ranks (LEARNGENE_DDP_PROCESSES) while this one keeps the heartbeat, progress
    # and cancel going; either way the learngene is then chosen once, here, on the grown weights.
    net, report = learn_task_parallel(net, ds, ddp_processes(ctx.settings.ddp_processes), epochs=task.epochs,
                                      progress=reporter.part(*TRAINING), should_stop=reporter.should_stop,
                                      name=task.name, timeout_s=ctx.settings.ddp_timeout_s,
                                      threads=ctx.settings.torch_threads)
    reporter.progress({"stage": "extracting learngene", "fraction": EXTRACTION[0]})
    gene = Learngene.extract(net, method=ctx.settings.extract_method, k=ctx.settings.extract_k,
                             progress=reporter.part(*EXTRACTION), should_stop=reporter.should_stop)
    # Artifacts before rows: a row never points at a file that is not there.
    net_sha, gene_sha = store.put(net.to_bytes()), store.put(gene.to_bytes())
    with ctx.sessions() as s:
        try:
            if _record(s, job, reporter, task, collective, head, net, net_sha, gene, gene_sha, report):
                s.commit()
            else:
                s.rollback()  # this run lost the job: its version and learngene rows go too
        except IntegrityError as e:  # the unique (collective, number) pair caught a race
            s.rollback()
            raise HeadMoved() from e


def _record(s: Session, job: Job, reporter: Reporter, task: Task, collective: CollectiveRow,
            head: CollectiveVersion | None, net: Collective, net_sha: str, gene: Learngene, gene_sha: str,
            report: dict) -> bool:
    """Write the new version, its learngene, the task's results and the job's end, in one transaction.
    False: the job is no longer this run's, and the caller rolls it all back."""
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
    report = json_safe(report)
    task_values = {"collective_version_id": version.id, "new_classes": report.get("new_classes"),
                   "open_world": report.get("open_world"), "accuracy": report.get("accuracy"),
                   "accuracy_row": report.get("accuracy_row")}
    result = {"task_id": task.id, "collective": collective.name, "collective_version": version.number,
              "learngene_id": gene_row.id}
    return jobstate.succeed(s, job.id, reporter.attempt, result, task=task_values,
                            last_progress=json_safe(reporter.last))
