"""End to end over real HTTP, against the embedded service as `make run` starts it (`python -m service run`:
uvicorn + a Celery worker process, SQLite, on-disk broker): the flow a user follows with curl."""
from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from safetensors.torch import load as load_safetensors

pytestmark = pytest.mark.e2e

TASKS = [["alpha", "beta", "gamma"], ["delta", "eps", "zeta"], ["eta", "theta", "alpha"]]
KEY = "lgk_e2e-write-key"  # LEARNGENE_API_KEY: the automation path of item 2
TARGET = ["p", "q", "r", "s"]


@pytest.fixture
def service(tmp_path, kit):
    port = kit.free_port()
    settings = {"data_dir": tmp_path / "var", "port": port, "extract_method": "gradient", "api_key": KEY}
    proc = kit.spawn(["-m", "service", "run"], settings, tmp_path / "service.log")
    try:
        kit.wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc, log=tmp_path / "service.log")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                          headers={"Authorization": f"Bearer {KEY}"}) as client:
            yield client
    finally:
        kit.stop(proc)


def test_three_tasks_then_an_individual_over_http(service, make_task, kit):
    client = service
    job_ids = []
    for i, classes in enumerate(TASKS):
        r = client.post("/tasks", files={"file": (f"task{i}.npz", make_task(classes, 10, seed=i))},
                        data={"name": f"task-{i}", "epochs": "2"})
        assert r.status_code == 202 and r.headers["location"] == f"/jobs/{r.json()['id']}"
        job_ids.append(r.json()["id"])
    done = [kit.wait_job(client, j) for j in job_ids]
    assert [d["status"] for d in done] == ["succeeded"] * 3, done
    assert [d["result"]["collective_version"] for d in done] == [1, 2, 3]

    catalog = client.get("/learngenes").json()
    assert sorted(item["collective_version"] for item in catalog["items"]) == [1, 2, 3]
    assert {item["id"] for item in catalog["items"]} == {d["result"]["learngene_id"] for d in done}
    last_task = client.get(f"/tasks/{done[2]['result']['task_id']}").json()
    assert last_task["new_classes"] == ["eta", "theta"] and last_task["open_world"] is not None

    support = make_task(TARGET, 5, seed=20)  # 4-way, 5 samples per class
    query = make_task(TARGET, 5, seed=21)
    r = client.post("/individuals", files={"file": ("support.npz", support), "eval_file": ("query.npz", query)},
                    data={"epochs": "15", "seed": "1"})
    assert r.status_code == 202 and r.json()["kind"] == "individual"
    job = kit.wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    individual = client.get(f"/individuals/{job['result']['individual_id']}").json()
    assert individual["learngene_id"] == catalog["items"][0]["id"]  # the newest, by default
    assert individual["shots"] == {c: 5 for c in TARGET} and individual["options"]["init"] == "auto"
    assert individual["init"] == individual["metrics"]["auto"]["init"]  # what auto chose, and why
    assert individual["metrics"]["eval_accuracy"] >= 0.5  # four well separated classes: far above chance

    x = np.load(io.BytesIO(query))["x"]
    buf = io.BytesIO()
    np.savez(buf, x=x)
    predicted = client.post(f"/individuals/{individual['id']}/predictions", files={"file": ("x.npz", buf.getvalue())})
    assert predicted.status_code == 200
    labels = [p["label"] for p in predicted.json()["predictions"]]
    truth = [c for c in TARGET for _ in range(5)]
    assert len(labels) == 20 and np.mean([a == b for a, b in zip(labels, truth)]) >= 0.5

    weights = client.get(f"/individuals/{individual['id']}/weights")
    assert weights.status_code == 200 and weights.headers["content-type"] == "application/octet-stream"
    tensors = load_safetensors(weights.content)
    assert sum(t.numel() for k, t in tensors.items() if "num_batches" not in k
               and "running" not in k) == individual["parameters"]
