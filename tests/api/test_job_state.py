"""The job state machine (service/jobstate.py) on SQLite and PostgreSQL: fenced transitions, the task row's
mirrored status, progress that reaches 1.0 only at the end, and a stalled job failed by the reaper."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from service import jobstate
from service.models import CollectiveVersion, Individual, Job, JobStatus, Task
from workers.reaper import reap
from workers.individuals import run_individual_job


def _status(api, job_id: int) -> tuple[JobStatus, int, dict | None]:
    with api.ctx.sessions() as s:
        job = s.get(Job, job_id)
        return job.status, job.attempts, job.result


def test_a_stale_run_changes_nothing_once_the_job_is_claimed_again(api, make_task, caplog):
    job_id = api.post_task(make_task(["a", "b"], 4))["id"]
    api.sent.clear()
    with api.ctx.sessions() as s:
        first = jobstate.claim(s, job_id, "w1")
        s.commit()
        assert jobstate.claim(s, job_id, "w1-duplicate-message") is None  # a redelivered message: no second run
        assert jobstate.requeue(s, job_id, first, "w1 went silent")
        s.commit()
        second = jobstate.claim(s, job_id, "w2")
        s.commit()
    assert (first, second) == (1, 2)
    with api.ctx.sessions() as s:
        assert not jobstate.progress(s, job_id, first, {"stage": "train", "fraction": 0.5})
        assert not jobstate.heartbeat(s, job_id, first)
        assert not jobstate.succeed(s, job_id, first, {"from": "w1"}, task={"accuracy": 0.1})
        assert not jobstate.end(s, job_id, first, JobStatus.failed, "w1's error")
        assert jobstate.should_stop(s, job_id, first) == "lost" and jobstate.should_stop(s, job_id, second) is None
        s.commit()
    assert "stale write" in caplog.text
    job = api.client.get(f"/jobs/{job_id}").json()
    assert (job["status"], job["worker"], job["error"], job["result"]) == ("running", "w2", None, None)
    assert api.client.get(f"/tasks/{job['links']['task'].split('/')[-1]}").json()["status"] == "running"
    with api.ctx.sessions() as s:
        assert jobstate.succeed(s, job_id, second, {"from": "w2"}, task={"accuracy": 0.9})
        s.commit()
        task = s.get(Task, s.get(Job, job_id).task_id)
        assert (task.status, task.accuracy) == (JobStatus.succeeded, 0.9)
    assert _status(api, job_id) == (JobStatus.succeeded, 2, {"from": "w2"})


def test_a_worker_that_lost_its_job_writes_no_individual(api, make_task, monkeypatch):
    """The real worker path: the run's final transaction is refused and rolled back with its row."""
    api.post_task(make_task(["a", "b"], 6))
    api.run_jobs()
    r = api.client.post("/individuals", files={"file": ("s.npz", make_task(["a", "b"], 3, seed=4))},
                        data={"epochs": "2"})
    job_id = r.json()["id"]
    api.sent.clear()
    import workers.individuals as individuals

    real = individuals.train_individual

    def taken_over_meanwhile(*args, **kwargs):
        out = real(*args, **kwargs)
        with api.ctx.sessions() as s:  # while this run trained, the reaper gave the job to another worker
            attempt = s.get(Job, job_id).attempts
            assert jobstate.requeue(s, job_id, attempt, "silent")
            assert jobstate.claim(s, job_id, "w2") == attempt + 1
            s.commit()
        return out

    monkeypatch.setattr(individuals, "train_individual", taken_over_meanwhile)
    run_individual_job(api.ctx, job_id, worker="w1")
    with api.ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Individual)) == 0
        job = s.get(Job, job_id)
        assert (job.status, job.worker, job.attempts) == (JobStatus.running, "w2", 2)


def test_progress_reaches_one_only_when_the_job_ends(api, make_task, monkeypatch):
    written: list[dict] = []
    real = jobstate.progress
    monkeypatch.setattr(jobstate, "progress", lambda s, j, a, info: written.append(info) or real(s, j, a, info))
    job = api.post_task(make_task(["a", "b"], 4), epochs="2")
    api.run_jobs()
    fractions = [w["fraction"] for w in written]
    assert fractions == sorted(fractions) and max(fractions) < 1.0
    assert any(w["stage"] == "extracting learngene" for w in written)
    assert any(w["stage"] == "train" for w in written) or any("epoch" in w for w in written)
    done = api.client.get(f"/jobs/{job['id']}").json()
    assert (done["status"], done["progress"]["fraction"], done["progress"]["stage"]) == ("succeeded", 1.0, "done")


def test_a_job_that_makes_no_progress_is_failed_with_the_reason(api, make_task, monkeypatch):
    """The process lives (its heartbeat goes on) but the training hangs: the reaper fails the job."""
    from learngene import Collective

    api.settings.job_heartbeat_s, api.settings.job_stall_s = 0.1, 1.0
    release = threading.Event()
    real = Collective.learn_task

    def hung(self, *args, **kwargs):
        release.wait(30)
        return real(self, *args, **kwargs)  # wakes up: its first progress write is refused, and it stops

    monkeypatch.setattr(Collective, "learn_task", hung)
    job_id = api.post_task(make_task(["a", "b"], 4))["id"]
    worker = threading.Thread(target=api.run_jobs)
    worker.start()
    try:
        failed: list[int] = []
        for _ in range(100):
            failed += reap(api.ctx.sessions, api.settings, lambda job: pytest.fail("nothing to requeue"))["stalled"]
            if failed:
                break
            threading.Event().wait(0.1)
        assert failed == [job_id]
        with api.ctx.sessions() as s:
            beat_after = s.get(Job, job_id).heartbeat_at
    finally:
        release.set()
        worker.join(60)
    job = api.client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "failed" and "no progress for 1 s" in job["error"], job
    with api.ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CollectiveVersion)) == 0
        assert s.get(Job, job_id).heartbeat_at == beat_after  # the woken worker wrote nothing more


def test_cancel_during_learngene_extraction_ends_the_job_within_seconds(api, make_task):
    """The validated extraction trains pseudo tasks after the collective's training: it reports its own stage
    and stops on cancel like training does."""
    api.settings.extract_method = "validated"
    job_id = api.post_task(make_task(["a", "b", "c", "d", "e"], 12), epochs="1")["id"]
    worker = threading.Thread(target=api.run_jobs)
    worker.start()
    try:
        stage = None
        for _ in range(3000):
            stage = api.client.get(f"/jobs/{job_id}").json()["progress"].get("stage")
            if stage in ("extracting learngene", "validate"):
                break
            threading.Event().wait(0.01)
        assert stage in ("extracting learngene", "validate"), stage
        assert api.client.post(f"/jobs/{job_id}/cancel").status_code == 202
    finally:
        worker.join(30)
    assert not worker.is_alive(), "the extraction did not stop"
    job = api.client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "cancelled" and job["progress"]["fraction"] < 1.0, job
    with api.ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CollectiveVersion)) == 0


def test_the_sweeper_resends_a_queued_job_nobody_claimed_once(api, make_task):
    from datetime import timedelta

    from sqlalchemy import update

    from service.models import utcnow
    from workers.reaper import sweep

    fresh = api.post_task(make_task(["a", "b"], 4))["id"]
    stuck = api.post_task(make_task(["c", "d"], 4))["id"]
    api.sent.clear()
    with api.ctx.sessions() as s:  # `stuck` was committed long ago and its message never went out
        s.execute(update(Job).where(Job.id == stuck).values(published_at=utcnow() - timedelta(hours=1)))
        s.commit()
    api.settings.republish_after_s = 60
    sent: list[int] = []
    assert sweep(api.ctx.sessions, api.settings, lambda job: sent.append(job.id)) == [stuck]
    assert sweep(api.ctx.sessions, api.settings, lambda job: sent.append(job.id)) == []  # not again at once
    assert sent == [stuck] and fresh not in sent
    api.sent.extend(sent)
    api.run_jobs()
    assert api.client.get(f"/jobs/{stuck}").json()["status"] == "succeeded"
