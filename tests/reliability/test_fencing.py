"""Nothing run twice, nothing lost, in the production topology (PostgreSQL + Redis, real `python -m workers`):

- a worker silenced (SIGSTOP: alive, holding its job and its message) while a second worker takes the job over
  ends with exactly one result: once woken, the stale worker's writes change nothing;
- a worker frozen in the middle of a write (holding the job's row lock) does not block the reaper for ever;
- a crash between the commit of a job and the publish of its message still runs the job (the sweeper).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from service import jobstate
from service.app import create_app
from service.db import make_engine, make_sessionmaker
from service.migrate import upgrade
from service.models import Individual, Job, JobKind, JobStatus, utcnow
from service.settings import Settings
from tests.conftest import ROOT
from workers import reaper
from workers.context import WorkerContext, worker_sessions

pytestmark = pytest.mark.integration


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def production(tmp_path, pg_url, redis_broker, **extra) -> dict:
    return {"database_url": pg_url, "broker_url": redis_broker.url, "data_dir": tmp_path / "var",
            "redis_key_prefix": f"{redis_broker.prefix}{tmp_path.name}:", "extract_method": "gradient",
            "worker_heartbeat_s": 0.5, "job_heartbeat_s": 0.5, "job_timeout_s": 3, "reaper_interval_s": 0.5,
            "progress_interval_s": 0.1, "auth": False, **extra}


def test_a_silenced_worker_taken_over_leaves_exactly_one_result(tmp_path, pg_url, redis_broker, kit, make_task):
    values = production(tmp_path, pg_url, redis_broker)
    settings = Settings(**values)
    upgrade(settings)
    procs: list[subprocess.Popen] = []

    def worker(name: str) -> subprocess.Popen:
        procs.append(kit.spawn(["-m", "workers", "-n", f"{name}@%h", "-Q", "individuals,grow"], values,
                               tmp_path / f"{name}.log"))
        return procs[-1]

    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            w1 = worker("w1")
            r = client.post("/tasks", files={"file": ("t.npz", make_task(["a", "b", "c"], 8))}, data={"epochs": "1"})
            assert kit.wait_job(client, r.json()["id"], 120)["status"] == "succeeded"
            r = client.post("/individuals", files={"file": ("s.npz", make_task(["a", "b"], 4, seed=5))},
                            data={"epochs": "400", "init": "learngene"})  # trains (auto may pick instant)
            job_id = r.json()["id"]
            wait_for(lambda: (j := client.get(f"/jobs/{job_id}").json())["status"] == "running"
                     and j["progress"].get("epoch"), 60, "the individual never started training on w1")
            os.killpg(w1.pid, signal.SIGSTOP)  # silenced, not killed: its process, job and message stay
            try:
                worker("w2")
                done = kit.wait_job(client, job_id, 180)
            finally:
                os.killpg(w1.pid, signal.SIGCONT)
            assert done["status"] == "succeeded" and done["attempts"] == 2 and done["worker"].startswith("w2@"), done
            # The woken worker goes on until its next write, which is refused: it stops and writes nothing.
            sessions = make_sessionmaker(make_engine(settings.database))

            def individuals() -> int:
                with sessions() as s:
                    return s.scalar(select(func.count()).select_from(Individual))

            log = tmp_path / "w1.log"
            wait_for(lambda: "stale write" in log.read_text() or individuals() > 1, 120, "w1 never woke up")
            time.sleep(1)
            assert individuals() == 1
            after = client.get(f"/jobs/{job_id}").json()
            assert (after["status"], after["worker"], after["result"]) == ("succeeded", done["worker"], done["result"])
            assert "stale write" in log.read_text()
    finally:
        for proc in procs:
            if proc.poll() is None:
                kit.stop(proc)


def test_a_worker_frozen_inside_a_write_does_not_block_the_reaper(tmp_path, pg_url, redis_broker):
    # The failure this guards against: w1 stopped between its progress UPDATE and its COMMIT keeps the job's row
    # locked, and the reaper's UPDATE of that row waits on the lock for as long as w1 stays stopped.
    settings = Settings(**production(tmp_path, pg_url, redis_broker, job_timeout_s=1))
    upgrade(settings)
    frozen = WorkerContext.from_settings(settings, name="w1@test")  # the engine a worker writes through
    with frozen.sessions() as s:
        job = Job(kind=JobKind.individual, params={}, status=JobStatus.running, attempts=1, worker="w1@test",
                  heartbeat_at=utcnow() - timedelta(seconds=30))
        s.add(job)
        s.commit()
        job_id = job.id
    stuck = frozen.sessions()
    assert jobstate.progress(stuck, job_id, 1, {"stage": "train"})  # row locked, never committed: frozen here
    sent: list[int] = []
    sessions = worker_sessions(settings)  # what the reaper's thread (workers/heartbeat.py) uses
    reaping = threading.Thread(target=reaper.reap, args=(sessions, settings, lambda j: sent.append(j.id)),
                               daemon=True)
    reaping.start()
    reaping.join(120)
    assert not reaping.is_alive(), "the reaper is still waiting on the frozen worker's lock"
    assert sent == [job_id]
    with sessions() as s:
        job = s.get(Job, job_id)
        assert (job.status, job.worker, job.progress["stage"]) == (JobStatus.queued, None, "requeued")
    with pytest.raises(DBAPIError, match="idle-in-transaction"):  # the server ended the frozen write
        stuck.commit()
    stuck.close()


CRASH_AFTER_COMMIT = r"""
import os, sys
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings

def crash(job):  # the process dies between the commit of the job and the publish of its message
    print(f"JOB {job.id}", flush=True)
    os._exit(17)

with TestClient(create_app(Settings(), enqueue=crash)) as client:
    client.post("/tasks", files={"file": ("t.npz", open(sys.argv[1], "rb"))}, data={"epochs": "1"})
"""


def test_a_crash_between_commit_and_publish_still_runs_the_job(tmp_path, pg_url, redis_broker, kit, make_task):
    values = production(tmp_path, pg_url, redis_broker, republish_after_s=1)
    settings = Settings(**values)
    upgrade(settings)
    data = tmp_path / "t.npz"
    data.write_bytes(make_task(["a", "b"], 6))
    api = subprocess.run([sys.executable, "-c", CRASH_AFTER_COMMIT, str(data)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env=kit.service_env(values))
    assert api.returncode == 17, api.stderr[-3000:]
    job_id = int(api.stdout.split("JOB ")[1].split()[0])
    sessions = make_sessionmaker(make_engine(settings.database))
    with sessions() as s:
        assert s.get(Job, job_id).status == JobStatus.queued  # committed, never sent
    proc = kit.spawn(["-m", "workers", "-n", "sweeper@%h"], values, tmp_path / "worker.log")
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            done = kit.wait_job(client, job_id, 120)
        assert done["status"] == "succeeded" and done["attempts"] == 1, done
        assert "re-sent 1 queued job" in (tmp_path / "worker.log").read_text()
    finally:
        kit.stop(proc)
