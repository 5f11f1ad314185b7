"""The whole job path through a real broker and a real Celery worker, on SQLite + the on-disk broker
(the embedded default) and on PostgreSQL + Redis (production)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from sqlalchemy import select

from service.db import make_engine, make_sessionmaker
from service.models import Job

pytestmark = pytest.mark.integration


def test_tasks_and_an_individual_through_celery(stack, make_task):
    c = stack.client
    uploads = [c.post("/tasks", files={"file": (f"t{i}.npz", make_task(cl, 8, seed=i))}, data={"epochs": "1"})
               for i, cl in enumerate([["a", "b", "c"], ["c", "d", "e"]])]
    assert all(r.status_code == 202 for r in uploads)
    done = [stack.wait(r.json()["id"]) for r in uploads]
    assert [d["status"] for d in done] == ["succeeded", "succeeded"], done
    assert [d["result"]["collective_version"] for d in done] == [1, 2]
    assert c.get(f"/tasks/{done[1]['result']['task_id']}").json()["new_classes"] == ["d", "e"]

    r = c.post("/individuals", files={"file": ("s.npz", make_task(["p", "q", "r"], 5, seed=5)),
                                      "eval_file": ("e.npz", make_task(["p", "q", "r"], 4, seed=6))},
               data={"epochs": "2"})
    assert r.status_code == 202
    job = stack.wait(r.json()["id"])
    assert job["status"] == "succeeded", job
    ind = c.get(f"/individuals/{job['result']['individual_id']}").json()
    assert ind["learngene_id"] == done[1]["result"]["learngene_id"] and "eval_accuracy" in ind["metrics"]
    buf = io.BytesIO()
    np.savez(buf, x=np.load(io.BytesIO(make_task(["r", "p"], 1, seed=9)))["x"])
    predictions = c.post(f"/individuals/{ind['id']}/predictions", files={"file": ("x.npz", buf.getvalue())})
    assert predictions.status_code == 200 and len(predictions.json()["predictions"]) == 2

    # Every job was run by the Celery worker (not inline), once, and the worker said it was alive.
    engine = make_engine(stack.settings.database)
    with make_sessionmaker(engine)() as s:
        rows = s.scalars(select(Job)).all()
        assert {j.worker for j in rows} == {stack.worker_name} and {j.attempts for j in rows} == {1}
    engine.dispose()
    ready = c.get("/readyz")
    assert ready.status_code == 200 and ready.json()["workers"] == 1


def test_a_corrupt_artifact_fails_the_job_with_a_reason(stack, make_task):
    """Artifacts are checked against their sha256 on load: a damaged learngene file fails the job that
    needs it (with a message, not a trace) and its download is a 500 problem, never bad bytes."""
    c = stack.client
    first = stack.wait(c.post("/tasks", files={"file": ("t.npz", make_task(["a", "b"], 6))},
                              data={"epochs": "1"}).json()["id"])
    assert first["status"] == "succeeded"
    gene = c.get(f"/learngenes/{first['result']['learngene_id']}").json()
    path = stack.settings.artifacts / gene["sha256"][:2] / gene["sha256"]
    path.write_bytes(path.read_bytes()[:-1] + b"?")
    job = stack.wait(c.post("/individuals", files={"file": ("s.npz", make_task(["p", "q"], 3))}).json()["id"])
    assert job["status"] == "failed" and "integrity" in job["error"] and "Traceback" not in job["error"]
    download = c.get(gene["links"]["weights"])
    assert download.status_code == 500 and download.json()["type"] == "/problems/artifact-unavailable"
