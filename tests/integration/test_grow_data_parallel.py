"""A grow job with LEARNGENE_DDP_PROCESSES=2: two gloo ranks train, the worker's own process keeps the job.

Real parts: the registry (SQLite through SQLAlchemy and Alembic), the artifact store, the worker's job code
(`run_task_job`), real rank processes and process groups. Popen is watched, not replaced.
"""
from __future__ import annotations

import subprocess

import pytest
from sqlalchemy import select

from learngene.data import InputSpec
from service import jobstate
from service.migrate import upgrade
from service.models import CollectiveVersion, Job, JobKind, JobStatus, Learngene, Task
from service.registry import ensure_collective
from service.settings import Settings
from workers import jobrun
from workers.context import WorkerContext
from workers.grow import run_task_job

pytestmark = pytest.mark.integration


def queue_task(ctx: WorkerContext, data: bytes, epochs: int) -> int:
    """Task and job rows as POST /tasks makes them (the API path is covered elsewhere)."""
    with ctx.sessions() as s:
        collective = ensure_collective(s, "default", InputSpec(1, 16), "tiny", 0)
        task = Task(name="t", collective_id=collective.id, sha256=ctx.store.put(data), classes=[], class_counts=[],
                    num_samples=0, channels=1, size=16, epochs=epochs)
        s.add(task)
        s.flush()
        job = Job(kind=JobKind.task, task_id=task.id, params={"task_id": task.id})
        s.add(job)
        s.commit()
        return job.id


@pytest.fixture
def ddp_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARNGENE_DEVICE", "cpu")  # gloo, also on a machine with GPUs (the ranks inherit it)
    settings = Settings(data_dir=tmp_path, extract_method="gradient", ddp_processes="2", ddp_timeout_s=120,
                        progress_interval_s=0.0, job_heartbeat_s=0.2)
    upgrade(settings)
    ranks: list[subprocess.Popen] = []
    popen = subprocess.Popen

    def watched(args, *a, **k):
        ranks.append(popen(args, *a, **k))
        return ranks[-1]

    monkeypatch.setattr(subprocess, "Popen", watched)
    return WorkerContext.from_settings(settings), ranks


def test_a_grow_job_trains_on_two_ranks(ddp_worker, make_task, monkeypatch):
    ctx, ranks = ddp_worker
    job_id = queue_task(ctx, make_task(["a", "b", "c", "d"], 10, seed=1), epochs=4)
    seen: list[dict] = []
    original = jobrun.Reporter.progress

    def noted(self, info):
        seen.append(info)
        original(self, info)

    monkeypatch.setattr(jobrun.Reporter, "progress", noted)
    run_task_job(ctx, job_id, worker="w")
    with ctx.sessions() as s:
        job = s.get(Job, job_id)
        assert job.status == JobStatus.succeeded, job.error
        assert job.heartbeat_at is not None  # the worker's process kept the job alive while the ranks trained
        version = s.scalars(select(CollectiveVersion)).one()
        gene = s.scalars(select(Learngene)).one()
        assert gene.collective_version_id == version.id and gene.layers and gene.method == "gradient"
        assert len(version.label_space) == 4
    assert [r.args[r.args.index("--world") + 1] for r in ranks] == ["2", "2"]
    assert all(r.returncode == 0 for r in ranks)
    epochs = [i["epoch"] for i in seen if i.get("stage") == "train"]
    assert epochs == [1, 2, 3, 4]  # rank 0's progress, through the worker's reporter


def test_cancel_reaches_every_rank(ddp_worker, make_task, monkeypatch):
    ctx, ranks = ddp_worker
    job_id = queue_task(ctx, make_task(["a", "b", "c", "d"], 10, seed=1), epochs=200)
    original = jobrun.Reporter.progress

    def cancel_once_training(self, info):
        original(self, info)
        if info.get("stage") == "train" and info.get("epoch") == 1:
            with ctx.sessions() as s:  # what POST /jobs/{id}/cancel does
                jobstate.cancel(s, job_id)
                s.commit()

    monkeypatch.setattr(jobrun.Reporter, "progress", cancel_once_training)
    run_task_job(ctx, job_id, worker="w")
    with ctx.sessions() as s:
        job = s.get(Job, job_id)
        assert job.status == JobStatus.cancelled and job.progress["epoch"] < 200
        assert s.scalars(select(CollectiveVersion)).first() is None
    assert len(ranks) == 2 and all(r.returncode is not None for r in ranks)  # none left behind
