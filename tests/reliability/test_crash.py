"""Crash safety in the production topology (PostgreSQL + Redis): real `python -m workers` processes killed
with SIGKILL in the middle of training; the reaper (workers/reaper.py) must end every job, never leaving one
`running`, and no registry row may point at a missing artifact.
"""
from __future__ import annotations

import os
import signal
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.app import create_app
from service.artifacts import ArtifactStore
from service.db import make_engine, make_sessionmaker
from service.migrate import upgrade
from service.models import CollectiveVersion, Individual, Job, JobStatus, Learngene, Task
from service.settings import Settings
from workers.reaper import reap

pytestmark = pytest.mark.integration


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def training(client: TestClient, job_id: int):
    job = client.get(f"/jobs/{job_id}").json()
    return job if job["status"] == "running" and job["progress"].get("epoch") else None


def kill(proc) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the worker and its pool: no warm shutdown, no ack, nothing
    proc.wait(10)


def test_sigkill_mid_training_is_retried_then_succeeds_or_fails_with_a_reason(tmp_path, pg_url, redis_broker, kit,
                                                                               make_task):
    values = {
        "database_url": pg_url, "broker_url": redis_broker.url, "data_dir": tmp_path / "var",
        "redis_key_prefix": f"{redis_broker.prefix}{tmp_path.name}:", "extract_method": "gradient",
        "worker_heartbeat_s": 0.5, "job_heartbeat_s": 0.5, "job_timeout_s": 3, "reaper_interval_s": 0.5,
        "max_attempts": 2, "progress_interval_s": 0.1, "auth": False,
    }
    settings = Settings(**values)
    upgrade(settings)
    procs = []

    def worker(name: str):
        procs.append(kit.spawn(["-m", "workers", "-n", f"{name}@%h"], values, tmp_path / f"{name}.log"))
        return procs[-1]

    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            # 1. Killed once: the reaper of the next worker requeues it, and the second attempt succeeds.
            r = client.post("/tasks", files={"file": ("t.npz", make_task(["a", "b", "c"], 8))}, data={"epochs": "60"})
            assert r.status_code == 202, r.text
            job_a = r.json()["id"]
            w1 = worker("w1")
            wait_for(lambda: training(client, job_a), 90, "job A never started training on w1")
            kill(w1)
            killed_at = time.monotonic()
            worker("w2")
            done = kit.wait_job(client, job_a, timeout=120)
            assert done["status"] == "succeeded", done
            assert done["attempts"] == 2 and done["worker"].startswith("w2@")
            recovered_s = time.monotonic() - killed_at

            # 2. Killed on its last allowed attempt: failed, with the reason, not running for ever.
            r = client.post("/tasks", files={"file": ("u.npz", make_task(["d", "e"], 8, seed=3))},
                            data={"epochs": "1000"})
            assert r.status_code == 202, r.text
            job_b = r.json()["id"]
            wait_for(lambda: training(client, job_b), 90, "job B never started training on w2")
            kill(procs[-1])
            last = Settings(**{**values, "max_attempts": 1})  # what a deployment with max_attempts=1 does
            sent: list[int] = []
            sessions = make_sessionmaker(make_engine(settings.database))
            outcome = wait_for(lambda: reap(sessions, last, lambda job: sent.append(job.id))["failed"], 15,
                               "the reaper never took job B")
            assert outcome == [job_b] and sent == []
            failed = client.get(f"/jobs/{job_b}").json()
            assert failed["status"] == "failed" and "no heartbeat" in failed["error"] and "attempt" in failed["error"]
            assert client.get(failed["links"]["task"]).json()["status"] == "failed"

            # No job left running; every row's artifact exists.
            store = ArtifactStore(settings.artifacts)
            with sessions() as s:
                assert s.scalars(select(Job).where(Job.status == JobStatus.running)).all() == []
                digests = [*s.scalars(select(CollectiveVersion.weights_sha256)),
                           *s.scalars(select(Learngene.weights_sha256)), *s.scalars(select(Task.sha256))]
                digests += list(s.scalars(select(Individual.weights_sha256)))
            assert len(digests) >= 3 and all(store.exists(d) for d in digests)
            print(f"\nRELIABILITY crash: 2 SIGKILLs, job A recovered in {recovered_s:.1f} s, job B failed with reason")
    finally:
        for proc in procs:
            if proc.poll() is None:
                kit.stop(proc)
