"""Growing a collective is serialised: two growths at once give versions n+1 and n+2, never a lost update.

PostgreSQL: two growers in parallel threads; the collective's lease makes the second wait for the first.
A lapsed lease (its holder silent past the job timeout): a second growth commits while the first is still
training; the first notices that the head moved, and learns its task again on top of the new head.
"""
from __future__ import annotations

import logging
import threading

import pytest
from sqlalchemy import select

from learngene.data import InputSpec
from service.migrate import upgrade
from service.models import CollectiveVersion, Job, JobKind, JobStatus, Task
from service.registry import ensure_collective
from service.settings import Settings
from workers.context import WorkerContext
from workers.grow import run_task_job

pytestmark = pytest.mark.integration


def queue_tasks(ctx: WorkerContext, datasets: list[bytes]) -> list[int]:
    """Task and job rows as POST /tasks makes them (the API path is covered elsewhere)."""
    ids = []
    with ctx.sessions() as s:
        collective = ensure_collective(s, "default", InputSpec(1, 16), "small", 0)
        for i, data in enumerate(datasets):
            digest = ctx.store.put(data)
            task = Task(name=f"t{i}", collective_id=collective.id, sha256=digest, classes=[], class_counts=[],
                        num_samples=0, channels=1, size=16, epochs=1)
            s.add(task)
            s.flush()
            job = Job(kind=JobKind.task, task_id=task.id, params={"task_id": task.id})
            s.add(job)
            s.flush()
            ids.append(job.id)
        s.commit()
    return ids


def versions(ctx: WorkerContext) -> list[tuple[int, int | None, int]]:
    """(number, parent number, task id) per version, in order."""
    with ctx.sessions() as s:
        rows = s.scalars(select(CollectiveVersion).order_by(CollectiveVersion.number)).all()
        number = {v.id: v.number for v in rows}
        task_of = dict(s.execute(select(Task.collective_version_id, Task.id)).all())
        return [(v.number, number.get(v.parent_id), task_of.get(v.id)) for v in rows]


def statuses(ctx: WorkerContext, ids: list[int]) -> list[JobStatus]:
    with ctx.sessions() as s:
        return [s.get(Job, i).status for i in ids]


def test_parallel_growths_on_postgresql_form_one_chain(tmp_path, pg_url, make_task, caplog):
    settings = Settings(data_dir=tmp_path, database_url=pg_url, extract_method="gradient")
    upgrade(settings)
    ctx = WorkerContext.from_settings(settings)
    ids = queue_tasks(ctx, [make_task(["a", "b"], 8, seed=1), make_task(["c", "d"], 8, seed=2)])
    threads = [threading.Thread(target=run_task_job, args=(ctx, i), kwargs={"worker": f"w{i}"}) for i in ids]
    with caplog.at_level(logging.WARNING, logger="workers.grow"):
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert statuses(ctx, ids) == [JobStatus.succeeded, JobStatus.succeeded]
    assert "moved on" not in caplog.text  # the lease made one wait; nothing had to be redone
    chain = versions(ctx)
    assert [(n, p) for n, p, _ in chain] == [(1, None), (2, 1)]
    assert sorted(t for _, _, t in chain) == [1, 2]  # each task made exactly one version


def test_a_head_that_moves_during_training_is_noticed(tmp_path, make_task, caplog, monkeypatch):
    settings = Settings(data_dir=tmp_path, extract_method="gradient", progress_interval_s=0.0)
    upgrade(settings)
    ctx = WorkerContext.from_settings(settings)
    first, second = queue_tasks(ctx, [make_task(["a", "b"], 8, seed=1), make_task(["c", "d"], 8, seed=2)])

    # While the first job trains, its lease lapses and the second runs to completion (as a second worker would).
    from datetime import timedelta

    from sqlalchemy import update

    from service.models import GrowLease, utcnow
    from workers import jobrun

    original = jobrun.Reporter.progress
    fired = []

    def progress(self, info):
        if self.job_id == first and info.get("epoch") and not fired:
            fired.append(True)
            with ctx.sessions() as s:
                s.execute(update(GrowLease).values(expires_at=utcnow() - timedelta(seconds=1)))
                s.commit()
            run_task_job(ctx, second, worker="other")
        original(self, info)

    monkeypatch.setattr(jobrun.Reporter, "progress", progress)
    with caplog.at_level(logging.WARNING, logger="workers.grow"):
        run_task_job(ctx, first, worker="one")
    assert fired and statuses(ctx, [first, second]) == [JobStatus.succeeded, JobStatus.succeeded]
    assert "moved on while training" in caplog.text
    # The second job made version 1; the first, redone on top of it, version 2.
    assert versions(ctx) == [(1, None, 2), (2, 1, 1)]
