"""Workers on many hosts, run natively: the API (`python -m service api`) and two worker processes
(`python -m workers`), each with its OWN data folder and artifact cache, sharing nothing but PostgreSQL,
Redis and an S3 bucket (moto's S3 server over real HTTP). The whole flow through them; a store that goes
away during a job; two collectives growing at once while each one's jobs keep their order."""
from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, text

KEY = "lgk_s3-topology-key"
pytestmark = pytest.mark.integration


@dataclass
class Topology:
    client: httpx.Client
    bucket: str
    folders: dict[str, Path]  # process name → its own data folder
    pg_url: str

    def workers(self) -> list[tuple[str, str | None]]:
        engine = create_engine(self.pg_url)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT name, device FROM worker ORDER BY name")).all()
        engine.dispose()
        return [tuple(r) for r in rows]


def spawn(kit, args: list[str], settings: dict, env: dict, log: Path) -> subprocess.Popen:
    full = {**kit.service_env(settings), **env}
    return subprocess.Popen([sys.executable, *args], cwd=Path(__file__).resolve().parents[2], env=full,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def topology(tmp_path, pg_url, redis_broker, s3_server, kit):
    bucket = s3_server.bucket()
    port = kit.free_port()
    common = {
        "database_url": pg_url, "broker_url": redis_broker.url, "artifact_url": f"s3://{bucket}/lg",
        "redis_key_prefix": f"{redis_broker.prefix}{tmp_path.name}:", "port": port, "extract_method": "gradient",
        "worker_heartbeat_s": 1, "progress_interval_s": 0.2, "api_key": KEY, "artifact_timeout_s": 1,
        "store_retry_s": 3, "grow_lease_poll_s": 0.2,
    }
    folders = {name: tmp_path / name for name in ("api", "w1", "w2")}
    api = spawn(kit, ["-m", "service", "api"], {**common, "data_dir": folders["api"]}, s3_server.env(),
                tmp_path / "api.log")
    kit.wait_http(f"http://127.0.0.1:{port}/healthz", proc=api, log=tmp_path / "api.log")  # migrated by now
    workers = [spawn(kit, ["-m", "workers", "-n", f"{name}@%h"], {**common, "data_dir": folders[name]},
                     s3_server.env(), tmp_path / f"{name}.log") for name in ("w1", "w2")]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"Authorization": f"Bearer {KEY}"}) as client:
            deadline = time.monotonic() + 90
            while client.get("/readyz").json()["workers"] < 2 and time.monotonic() < deadline:
                time.sleep(0.25)  # the workers import torch and connect before their first heartbeat
            yield Topology(client, bucket, folders, pg_url)
    finally:
        for proc in [*workers, api]:
            kit.stop(proc)


def upload(client: httpx.Client, name: str, data: bytes, **form) -> dict:
    r = client.post("/tasks", files={"file": (name, data)}, data=form)
    assert r.status_code == 202, r.text
    return r.json()


def wait_for(check, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_whole_flow_on_s3_with_two_workers_that_share_no_folder(topology, make_task, kit, s3_server):
    client = topology.client
    # Each pool process announces its device once torch is loaded (it may still be loading).
    wait_for(lambda: all(device for _, device in topology.workers()), 90, "the workers' devices")
    workers = topology.workers()
    assert [w[0].split("@")[0] for w in workers] == ["w1", "w2"]
    assert all(device and device.startswith(("cpu (", "cuda:")) for _, device in workers), workers

    # Three tasks, one after another: versions 1, 2, 3 of one chain, a learngene each.
    grown = []
    for i, classes in enumerate([["a", "b", "c"], ["c", "d"], ["e", "f"]]):
        job = upload(client, f"t{i}.npz", make_task(classes, 8, seed=i), epochs="2")
        grown.append(kit.wait_job(client, job["id"]))
    assert [g["status"] for g in grown] == ["succeeded"] * 3, grown
    assert [g["result"]["collective_version"] for g in grown] == [1, 2, 3]
    versions = client.get("/collectives/default").json()["versions"]
    assert [(v["number"], v["parent"]) for v in versions] == [(1, None), (2, 1), (3, 2)]
    gene = client.get(f"/learngenes/{grown[-1]['result']['learngene_id']}").json()

    # Individuals from the newest learngene, two at once: one on each worker.
    def order(seed: int) -> dict:
        r = client.post("/individuals", files={"file": ("s.npz", make_task(["p", "q", "r"], 5, seed=seed))},
                        data={"epochs": "30", "seed": str(seed)})
        assert r.status_code == 202, r.text
        return kit.wait_job(client, r.json()["id"])

    with ThreadPoolExecutor(2) as pool:
        trained = list(pool.map(order, [1, 2]))
    assert [t["status"] for t in trained] == ["succeeded"] * 2, trained
    assert {t["worker"].split("@")[0] for t in trained} == {"w1", "w2"}
    assert all(t["device"] for t in trained)

    # Predictions (the API loads the model from the bucket, through its own cache) and downloads.
    ind = client.get(f"/individuals/{trained[0]['result']['individual_id']}").json()
    buf = io.BytesIO()
    np.savez(buf, x=np.load(io.BytesIO(make_task(["p", "r"], 1, seed=9)))["x"])
    predictions = client.post(ind["links"]["predictions"], files={"file": ("x.npz", buf.getvalue())})
    assert predictions.status_code == 200 and len(predictions.json()["predictions"]) == 2
    for resource in (gene, ind):
        download = client.get(resource["links"]["weights"])
        assert download.status_code == 200
        assert hashlib.sha256(download.content).hexdigest() == download.headers["x-content-sha256"]
        assert download.headers["etag"].strip('"') == download.headers["x-content-sha256"]

    # Nothing went through a shared folder: no local artifact store anywhere; every artifact is in the bucket;
    # each worker's cache holds only what that worker read or wrote.
    assert not any((folder / "artifacts").exists() for folder in topology.folders.values())
    keys = {o["Key"].rsplit("/", 1)[1] for o in
            s3_server.client().list_objects_v2(Bucket=topology.bucket).get("Contents", [])}
    assert gene["sha256"] in keys and len(keys) >= 3 + 3 + 2 + 2 + 2  # tasks, versions, genes, supports, models
    cached = {name: {p.name for p in (folder / "artifact-cache").glob("??/*")}
              for name, folder in topology.folders.items()}
    assert cached["w1"] and cached["w2"] and cached["w1"] <= keys and cached["w2"] <= keys


def test_a_store_outage_during_a_job_is_retried_and_nothing_half_written_is_read(topology, make_task, kit,
                                                                                s3_server):
    client = topology.client
    first = kit.wait_job(client, upload(client, "t.npz", make_task(["a", "b", "c"], 8), epochs="2")["id"])
    assert first["status"] == "succeeded", first
    # A trained init: the outage must hit a job that trains (auto may answer with instant, which trains nothing).
    r = client.post("/individuals", files={"file": ("s.npz", make_task(["p", "q"], 5, seed=3))},
                    data={"epochs": "150", "init": "learngene"})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    wait_for(lambda: client.get(f"/jobs/{job_id}").json()["progress"].get("epoch"), what="training to start")
    s3_server.pause()  # the store goes away while the model trains: saving its weights will fail
    try:
        wait_for(lambda: client.get(f"/jobs/{job_id}").json()["status"] == "queued", 120, "the job to be requeued")
    finally:
        s3_server.resume()
    requeued = client.get(f"/jobs/{job_id}").json()
    assert requeued["attempts"] == 1 and "artifact store was unreachable" in requeued["progress"]["reason"]
    assert client.get("/individuals").json()["items"] == []  # the failed run left no row behind
    done = kit.wait_job(client, job_id, 180)
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    individuals = client.get("/individuals").json()["items"]
    assert [i["id"] for i in individuals] == [done["result"]["individual_id"]]
    weights = client.get(individuals[0]["links"]["weights"])
    assert weights.status_code == 200 and hashlib.sha256(weights.content).hexdigest() == individuals[0]["sha256"]


def test_two_collectives_grow_at_once_and_each_keeps_its_order(topology, make_task, kit):
    client = topology.client
    # alpha's first task trains long; its second must wait for it; beta's must not wait for either.
    a1 = upload(client, "a1.npz", make_task(["a", "b", "c"], 8, seed=1), epochs="80", collective="alpha")
    a2 = upload(client, "a2.npz", make_task(["c", "d"], 8, seed=2), epochs="2", collective="alpha")
    b1 = upload(client, "b1.npz", make_task(["x", "y"], 8, seed=3), epochs="2", collective="beta")
    a1, a2, b1 = (kit.wait_job(client, j["id"], 240) for j in (a1, a2, b1))
    assert [j["status"] for j in (a1, a2, b1)] == ["succeeded"] * 3, (a1, a2, b1)
    assert b1["finished_at"] < a1["finished_at"], (a1, b1)  # beta grew while alpha's long task trained ...
    assert a2["started_at"] >= a1["finished_at"], (a1, a2)  # ... and alpha's jobs ran one at a time, in order
    assert {a1["worker"], b1["worker"]} == {w for w, _ in topology.workers()}  # on the two workers at once
    assert [j["attempts"] for j in (a1, a2, b1)] == [1, 1, 1]  # waiting for its turn spent no attempt
    alpha = client.get("/collectives/alpha").json()["versions"]
    assert [(v["number"], v["parent"]) for v in alpha] == [(1, None), (2, 1)]
    assert a1["result"]["collective_version"] == 1 and a2["result"]["collective_version"] == 2
