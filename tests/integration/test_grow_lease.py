"""Growth is serialised by a lease row, not by a lock held across training: on PostgreSQL, an upload to a
collective that is training answers at once (it used to wait for the row lock until training ended)."""
from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.migrate import upgrade
from service.models import GrowLease
from service.settings import Settings
from workers.context import WorkerContext
from workers.grow import run_task_job

pytestmark = pytest.mark.integration


def test_an_upload_answers_while_the_same_collective_trains(tmp_path, pg_url, make_task, kit):
    settings = Settings(data_dir=tmp_path / "var", database_url=pg_url, extract_method="gradient", auth=False,
                        progress_interval_s=0.1, job_heartbeat_s=0.5)
    upgrade(settings)
    ctx = WorkerContext.from_settings(settings, name="grower")
    sent: list[int] = []
    with TestClient(create_app(settings, enqueue=lambda job: sent.append(job.id)),
                    raise_server_exceptions=False) as client:
        r = client.post("/tasks", files={"file": ("long.npz", make_task(["a", "b", "c"], 8))}, data={"epochs": "1000"})
        long_job = r.json()["id"]
        grower = threading.Thread(target=run_task_job, args=(ctx, long_job), kwargs={"worker": "grower"})
        grower.start()
        try:
            deadline = time.monotonic() + 60
            while client.get(f"/jobs/{long_job}").json()["progress"].get("epoch") is None:
                assert time.monotonic() < deadline, "the long grow never started training"
                time.sleep(0.1)
            answer: dict = {}

            def upload() -> None:
                answer["r"] = client.post("/tasks", files={"file": ("next.npz", make_task(["d", "e"], 6, seed=2))})

            uploader = threading.Thread(target=upload, daemon=True)
            uploader.start()
            uploader.join(5)  # generous: the bug made it wait for the whole training
            assert not uploader.is_alive(), "the upload waited for the training of its collective"
            assert answer["r"].status_code == 202, answer["r"].text
            running = client.get(f"/jobs/{long_job}").json()
            assert running["status"] == "running", running  # the grow was still training meanwhile
            with ctx.sessions() as s:
                assert s.get(GrowLease, 1).job_id == long_job  # ... holding the collective's lease
        finally:
            client.post(f"/jobs/{long_job}/cancel")
            grower.join(60)
        assert kit.wait_job(client, long_job, 30)["status"] == "cancelled"
        with ctx.sessions() as s:
            assert s.get(GrowLease, 1) is None  # released on the way out
