"""POST /tasks, GET /tasks, the learngene catalog, and the job contract, through the app."""
from __future__ import annotations

import io

import numpy as np
from safetensors.numpy import load as load_safetensors

from service.artifacts import sha256

JOB_FIELDS = {"id", "kind", "status", "progress", "error", "result"}


def test_post_task_answers_202_with_a_committed_queued_job(api, make_task):
    r = api.client.post("/tasks", files={"file": ("digits.npz", make_task(["a", "b", "c"], 8))},
                        data={"name": "first", "epochs": "1"})
    assert r.status_code == 202
    job = r.json()
    assert JOB_FIELDS <= set(job)
    assert job["kind"] == "task" and job["status"] == "queued" and job["error"] is None and job["result"] is None
    assert r.headers["location"] == f"/jobs/{job['id']}"
    assert api.sent == [job["id"]] and api.committed_when_sent == [True]
    polled = api.client.get(f"/jobs/{job['id']}")
    assert polled.headers["retry-after"] == str(api.settings.retry_after_s)
    task = api.client.get(job["links"]["task"]).json()
    assert task["name"] == "first" and task["status"] == "queued" and task["classes"] == ["a", "b", "c"]
    assert task["class_counts"] == [8, 8, 8] and task["collective"] == "default"


def test_three_tasks_make_three_versions_and_learngenes(api, make_task):
    jobs = [api.post_task(make_task(classes, 8, seed=i), name=f"t{i}")
            for i, classes in enumerate([["a", "b", "c"], ["d", "e", "f"], ["a", "g", "h"]])]
    api.run_jobs()
    results = []
    for job in jobs:
        done = api.client.get(f"/jobs/{job['id']}")
        body = done.json()
        assert body["status"] == "succeeded", body
        assert "retry-after" not in done.headers
        assert body["progress"]["fraction"] == 1.0
        assert set(body["result"]) >= {"task_id", "collective_version", "learngene_id"}
        results.append(body["result"])
    assert [r["collective_version"] for r in results] == [1, 2, 3]

    third = api.client.get(f"/tasks/{results[2]['task_id']}").json()
    assert third["status"] == "succeeded" and third["collective_version"] == 3
    assert third["new_classes"] == ["g", "h"]  # "a" was learned by the first task: same name, same class
    assert set(third["open_world"]["per_class"]) == {"a", "g", "h"}
    assert 0.0 <= third["accuracy"] <= 1.0 and len(third["accuracy_row"]) == 3

    catalog = api.client.get("/learngenes").json()
    assert [i["collective_version"] for i in catalog["items"]] == [3, 2, 1]  # newest first
    for item in catalog["items"]:
        assert {"id", "collective_version", "layers", "parameters", "scores", "created_at"} <= set(item)
        assert item["layers"] and item["parameters"] > 0 and item["scores"]
    only_v2 = api.client.get("/learngenes", params={"collective_version": 2}).json()["items"]
    assert [i["id"] for i in only_v2] == [results[1]["learngene_id"]]

    detail = api.client.get(f"/learngenes/{results[2]['learngene_id']}").json()
    assert detail["lineage"]["parent_version"] == 2 and detail["lineage"]["task_id"] == results[2]["task_id"]
    assert len(detail["grad_stats"]["share"][0]) == 3  # layers x tasks: three tasks measured
    weights = api.client.get(detail["links"]["weights"])
    assert weights.status_code == 200 and weights.headers["x-content-sha256"] == detail["sha256"]
    assert sha256(weights.content) == detail["sha256"]
    tensors = load_safetensors(weights.content)
    assert any(k.endswith("conv.weight") for k in tensors)
    assert api.client.get(detail["links"]["weights"], headers={"If-None-Match": weights.headers["etag"]}
                          ).status_code == 304

    collective = api.client.get("/collectives/default").json()
    assert collective["head"] == 3
    assert [(v["number"], v["parent"]) for v in collective["versions"]] == [(1, None), (2, 1), (3, 2)]
    assert len(collective["versions"][2]["accuracy_matrix"]) == 3


def test_integer_labels_with_class_names_keep_names(api):
    x = np.random.default_rng(0).integers(0, 255, (12, 8, 8), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=np.array([0, 1, 2] * 4), class_names=np.array(["cat", "dog", "owl"]))
    job = api.post_task(buf.getvalue())
    task = api.client.get(job["links"]["task"]).json()
    assert task["classes"] == ["cat", "dog", "owl"] and task["size"] == 8


def test_task_list_filters_and_pages(api, make_task):
    for i in range(5):
        api.post_task(make_task(["a", "b"], 4, seed=i), name=f"t{i}")
    first = api.client.get("/tasks", params={"limit": 2}).json()
    assert [t["name"] for t in first["items"]] == ["t4", "t3"] and first["next_cursor"]
    second = api.client.get("/tasks", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    third = api.client.get("/tasks", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [t["name"] for t in second["items"] + third["items"]] == ["t2", "t1", "t0"]
    assert third["next_cursor"] is None
    assert api.client.get("/tasks", params={"status": "succeeded"}).json()["items"] == []
    assert len(api.client.get("/tasks", params={"collective": "default", "status": "queued"}).json()["items"]) == 5


def test_idempotency_key_returns_the_same_job(api, make_task):
    data = make_task(["a", "b"], 4)
    headers = {"Idempotency-Key": "upload-1"}
    a = api.client.post("/tasks", files={"file": ("t.npz", data)}, headers=headers)
    b = api.client.post("/tasks", files={"file": ("t.npz", data)}, headers=headers)
    assert a.status_code == b.status_code == 202 and a.json()["id"] == b.json()["id"]
    assert len(api.client.get("/tasks").json()["items"]) == 1 and len(api.sent) == 1


def test_explicit_collective_spec_converts_later_uploads(api, make_task):
    r = api.client.post("/collectives", json={"name": "rgb", "channels": 3, "size": 12})
    assert r.status_code == 201 and r.headers["location"] == "/collectives/rgb"
    assert api.client.post("/collectives", json={"name": "rgb", "channels": 3, "size": 12}).status_code == 409
    assert api.client.post("/collectives", json={"name": "x", "channels": 3, "size": 12,
                                                 "preset": "enormous"}).status_code == 422
    job = api.post_task(make_task(["a", "b"], 6, size=16, channels=1), collective="rgb")
    api.run_jobs()
    done = api.client.get(f"/jobs/{job['id']}").json()
    assert done["status"] == "succeeded", done
    gene = api.client.get(f"/learngenes/{done['result']['learngene_id']}").json()
    assert (gene["channels"], gene["size"]) == (3, 12) and gene["collective"] == "rgb"
    assert api.client.get("/collectives/rgb").json()["head"] == 1


def test_a_zip_of_class_folders_is_a_task(api, make_task):
    import zipfile

    from PIL import Image

    archive = io.BytesIO()
    x = np.load(io.BytesIO(make_task(["a", "b", "c"], 4)))["x"]
    with zipfile.ZipFile(archive, "w") as z:
        for i, image in enumerate(x):
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            z.writestr(f"upload/{['ant', 'bee', 'cow'][i // 4]}/{i}.png", png.getvalue())
    job = api.post_task(archive.getvalue())
    api.run_jobs()
    assert api.client.get(f"/jobs/{job['id']}").json()["status"] == "succeeded"
    task = api.client.get(job["links"]["task"]).json()
    assert task["classes"] == ["ant", "bee", "cow"] and task["class_counts"] == [4, 4, 4] and task["size"] == 16
