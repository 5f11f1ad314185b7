"""The embedded default (`python -m service run`, what `make run` starts): no server to install, migrations
at start, the URL printed, and a job queued while no worker ran survives a restart of both processes."""
from __future__ import annotations

import os
import re
import signal
import time

import httpx
import pytest
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.integration


def test_a_queued_job_survives_a_restart_of_api_and_worker(tmp_path, make_task, kit):
    data_dir = tmp_path / "var"
    port = kit.free_port()
    settings = {"data_dir": data_dir, "port": port, "extract_method": "gradient", "auth": "off"}
    url = f"http://127.0.0.1:{port}"

    # 1. The API alone (no worker yet): the upload is accepted and stays queued, on disk.
    api = kit.spawn(["-m", "service", "api"], settings, tmp_path / "api.log")
    try:
        kit.wait_http(f"{url}/healthz", proc=api, log=tmp_path / "api.log")
        r = httpx.post(f"{url}/tasks", files={"file": ("t.npz", make_task(["a", "b", "c"], 8))},
                       data={"epochs": "1"})
        assert r.status_code == 202
        job_id = r.json()["id"]
        assert httpx.get(f"{url}/readyz").status_code == 503  # no worker: not ready, but accepting
    finally:
        kit.stop(api)
    messages = list((data_dir / "broker" / "queue").glob("*.grow.msg"))
    assert len(messages) == 1 and str(job_id) in messages[0].read_text()

    # 2. Both processes from one command: the worker finds the job the earlier API queued.
    run = kit.spawn(["-m", "service", "run"], settings, tmp_path / "run.log")
    try:
        kit.wait_http(f"{url}/healthz", proc=run, log=tmp_path / "run.log")
        with httpx.Client(base_url=url, timeout=30) as client:
            job = kit.wait_job(client, job_id)
            assert job["status"] == "succeeded" and job["result"]["collective_version"] == 1
            assert job["worker"].startswith("embedded@")
            assert client.get("/readyz").json()["workers"] == 1
        registry = create_engine(f"sqlite:///{data_dir / 'registry.sqlite3'}")
        with registry.connect() as conn:
            (worker_pid,) = conn.execute(text("SELECT pid FROM worker")).one()
    finally:
        kit.stop(run)
    # One SIGTERM stops both: the worker shut down warm (its heartbeat row removed) and is gone.
    assert run.returncode is not None and run.returncode != -9
    with registry.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM worker")).scalar() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)
    assert not list((data_dir / "broker" / "queue").glob("*.msg"))
    log = (tmp_path / "run.log").read_text()
    assert re.search(rf"Learngene service: http://127\.0\.0\.1:{port}\b", log)
    assert (data_dir / "registry.sqlite3").exists() and any((data_dir / "artifacts").rglob("*"))


def test_a_job_interrupted_by_a_crash_runs_again_after_restart(tmp_path, make_task, kit):
    """SIGKILL the API and its worker mid-training: the on-disk broker has already handed the message out,
    so the next start finds the job `running` with no worker, and queues it again."""
    data_dir = tmp_path / "var"
    port = kit.free_port()
    settings = {"data_dir": data_dir, "port": port, "extract_method": "gradient", "progress_interval_s": 0.1,
                "auth": "off"}
    url = f"http://127.0.0.1:{port}"
    registry = create_engine(f"sqlite:///{data_dir / 'registry.sqlite3'}")

    run = kit.spawn(["-m", "service", "run"], settings, tmp_path / "run1.log")
    try:
        kit.wait_http(f"{url}/healthz", proc=run, log=tmp_path / "run1.log")
        r = httpx.post(f"{url}/tasks", files={"file": ("t.npz", make_task(["a", "b"], 8))}, data={"epochs": "1000"})
        job_id = r.json()["id"]
        with httpx.Client(base_url=url) as client:
            for _ in range(400):
                if client.get(f"/jobs/{job_id}").json()["progress"].get("epoch"):
                    break
                time.sleep(0.1)
        with registry.connect() as conn:
            (worker_pid,) = conn.execute(text("SELECT pid FROM worker")).one()
    finally:
        os.kill(run.pid, signal.SIGKILL)  # no chance to clean up: a crash
        os.killpg(worker_pid, signal.SIGKILL)  # the worker (and its pool) run in their own session
        run.wait(10)
    with registry.connect() as conn:
        assert conn.execute(text("SELECT status FROM job WHERE id = :i"), {"i": job_id}).scalar() == "running"

    run = kit.spawn(["-m", "service", "run"], settings, tmp_path / "run2.log")
    try:
        kit.wait_http(f"{url}/healthz", proc=run, log=tmp_path / "run2.log")
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(400):
                job = client.get(f"/jobs/{job_id}").json()
                if job["attempts"] == 2 and job["progress"].get("epoch"):
                    break
                time.sleep(0.1)
            assert job["status"] == "running" and job["attempts"] == 2, job  # picked up again, training
            assert client.post(f"/jobs/{job_id}/cancel").status_code == 202
            assert kit.wait_job(client, job_id)["status"] == "cancelled"
    finally:
        kit.stop(run)
    assert "requeued 1 job(s)" in (tmp_path / "run2.log").read_text()
