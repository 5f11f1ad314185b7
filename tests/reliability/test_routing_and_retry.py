"""Two decisions a worker makes without waiting in its slot, on a real registry (SQLite) with the Celery send
faked (the boundary: `ctx.send` records instead of publishing; the real hop is in test_s3_topology.py):

- a grow job whose collective is busy is deferred unclaimed (no attempt spent), in order, other collectives
  unaffected (workers/routing.py);
- a job that finds the artifact store unreachable is queued again with a growing countdown, leaves no row,
  and fails with the reason after max_attempts runs (workers/jobrun.retry_later).
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from learngene.data import InputSpec
from service.artifacts import ArtifactUnavailable
from service.migrate import upgrade
from service.models import GrowLease, Individual, Job, JobKind, JobStatus, Task, utcnow
from service.registry import ensure_collective
from service.settings import Settings
from workers import routing
from workers.context import WorkerContext
from workers.individuals import run_individual_job


@pytest.fixture
def ctx(tmp_path):
    settings = Settings(data_dir=tmp_path / "var", extract_method="gradient", store_retry_s=2, max_attempts=3)
    upgrade(settings)
    ctx = WorkerContext.from_settings(settings, name="w@test")
    ctx.sent = []  # type: ignore[attr-defined]
    ctx.send = lambda job, delay: ctx.sent.append((job.id, delay))
    return ctx


def grow_jobs(ctx, collective: str, n: int) -> list[int]:
    ids = []
    with ctx.sessions() as s:
        c = ensure_collective(s, collective, InputSpec(1, 16), "small", 0)
        for i in range(n):
            task = Task(name=f"{collective}{i}", collective_id=c.id, sha256="0" * 64, classes=[], class_counts=[],
                        num_samples=0, channels=1, size=16, epochs=1)
            s.add(task)
            s.flush()
            job = Job(kind=JobKind.task, task_id=task.id, params={"task_id": task.id})
            s.add(job)
            s.flush()
            ids.append(job.id)
        s.commit()
    return ids


def set_status(ctx, job_id: int, status: JobStatus) -> None:
    with ctx.sessions() as s:
        s.execute(update(Job).where(Job.id == job_id).values(status=status))
        s.commit()


def test_a_busy_collectives_next_job_is_deferred_unclaimed_and_others_go(ctx):
    a1, a2, a3 = grow_jobs(ctx, "alpha", 3)
    (b1,) = grow_jobs(ctx, "beta", 1)
    assert routing.take_turn(ctx, a1)  # first of its collective: go
    set_status(ctx, a1, JobStatus.running)
    with ctx.sessions() as s:  # a1 holds alpha's lease while it trains
        s.add(GrowLease(collective_id=1, job_id=a1, attempt=1, expires_at=utcnow() + timedelta(seconds=60)))
        s.commit()
    assert not routing.take_turn(ctx, a2) and not routing.take_turn(ctx, a3)  # alpha is busy
    assert routing.take_turn(ctx, b1)  # beta is not
    assert ctx.sent == [(a2, ctx.settings.grow_lease_poll_s), (a3, ctx.settings.grow_lease_poll_s)]
    with ctx.sessions() as s:
        for job_id in (a2, a3):
            job = s.get(Job, job_id)
            assert job.status == JobStatus.queued and job.attempts == 0 and job.worker is None
            assert job.progress["stage"] == routing.WAITING
    # a1 done: a2 goes, a3 still waits for a2 (order); a cancelled a2 would let a3 go.
    set_status(ctx, a1, JobStatus.succeeded)
    with ctx.sessions() as s:
        s.query(GrowLease).delete()
        s.commit()
        assert routing.is_turn(s, a2) is True and routing.is_turn(s, a3) is False
    set_status(ctx, a2, JobStatus.cancelled)
    with ctx.sessions() as s:
        assert routing.is_turn(s, a3) is True and routing.is_turn(s, a2) is None  # not queued: nothing to run


def test_a_lapsed_lease_does_not_hold_the_next_job_back(ctx):
    a1, a2 = grow_jobs(ctx, "alpha", 2)
    set_status(ctx, a1, JobStatus.running)
    with ctx.sessions() as s:  # a1's worker went silent: its lease lapsed
        s.add(GrowLease(collective_id=1, job_id=a1, attempt=1, expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
        assert routing.is_turn(s, a2) is True


class DownStore:
    """The artifact store as a worker sees it during an outage: every call raises the retryable error."""

    def __getattr__(self, name):
        def unavailable(*args, **kwargs):
            raise ArtifactUnavailable("the artifact store cannot be reached: connection refused")

        return unavailable


def individual_job(ctx) -> int:
    with ctx.sessions() as s:
        job = Job(kind=JobKind.individual, params={"learngene_id": 1, "support_sha256": "0" * 64, "options": {}})
        s.add(job)
        s.commit()
        return job.id


def test_an_unreachable_store_requeues_the_job_with_a_growing_countdown_then_fails_it(ctx, monkeypatch):
    import workers.individuals as individuals

    job_id = individual_job(ctx)
    ctx.store = DownStore()
    # The job's first store call (reading the learngene's weights) meets the outage.
    monkeypatch.setattr(individuals, "_train", lambda ctx, job, reporter: ctx.store.get("0" * 64))
    for attempt, delay in ((1, 2.0), (2, 4.0)):
        run_individual_job(ctx, job_id, worker="w@test")
        with ctx.sessions() as s:
            job = s.get(Job, job_id)
            assert job.status == JobStatus.queued and job.attempts == attempt
            assert "artifact store was unreachable" in job.progress["reason"]
            assert s.scalar(select(func.count()).select_from(Individual)) == 0
        assert ctx.sent[-1] == (job_id, delay)
    run_individual_job(ctx, job_id, worker="w@test")  # the third run of three: failed, with the reason
    with ctx.sessions() as s:
        job = s.get(Job, job_id)
        assert job.status == JobStatus.failed and job.attempts == 3
        assert "artifact store stayed unreachable over 3 attempt(s)" in job.error
    assert len(ctx.sent) == 2
