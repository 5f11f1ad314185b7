"""docker-compose.yml's topology, run natively: the API (`python -m service api`, migrations at start) and
two worker processes (`python -m workers`) against the local Redis and PostgreSQL, over real HTTP."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

KEY = "lgk_topology-write-key"
pytestmark = pytest.mark.integration


@pytest.fixture
def topology(tmp_path, pg_url, redis_broker, kit):
    port = kit.free_port()
    settings = {
        "database_url": pg_url, "broker_url": redis_broker.url,
        "redis_key_prefix": f"{redis_broker.prefix}{tmp_path.name}:", "data_dir": tmp_path / "var",
        "port": port, "extract_method": "gradient", "worker_heartbeat_s": 1, "progress_interval_s": 0.2,
        "api_key": KEY,
    }
    api = kit.spawn(["-m", "service", "api"], settings, tmp_path / "api.log")
    kit.wait_http(f"http://127.0.0.1:{port}/healthz", proc=api, log=tmp_path / "api.log")  # migrated by now
    workers = [kit.spawn(["-m", "workers", "-n", f"w{i}@%h"], settings, tmp_path / f"w{i}.log") for i in (1, 2)]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"Authorization": f"Bearer {KEY}"}) as client:
            yield client
    finally:
        for proc in [*workers, api]:
            kit.stop(proc)


def test_api_and_two_workers_on_redis_and_postgresql(topology, make_task, kit):
    client = topology
    deadline = time.monotonic() + 60
    while (ready := client.get("/readyz")).json()["workers"] < 2 and time.monotonic() < deadline:
        time.sleep(0.25)  # the workers import torch and connect before their first heartbeat
    assert ready.status_code == 200 and ready.json()["workers"] == 2, ready.text

    def upload(i: int) -> dict:
        classes = [f"c{i}a", f"c{i}b", "shared"]
        r = client.post("/tasks", files={"file": (f"t{i}.npz", make_task(classes, 8, seed=i))}, data={"epochs": "2"})
        assert r.status_code == 202, r.text
        return r.json()

    # Two uploads at once, two workers on the grow queue: versions 1 and 2, one chain, no lost update.
    with ThreadPoolExecutor(2) as pool:
        jobs = list(pool.map(upload, [1, 2]))
    done = [kit.wait_job(client, j["id"]) for j in jobs]
    assert [d["status"] for d in done] == ["succeeded", "succeeded"], done
    assert sorted(d["result"]["collective_version"] for d in done) == [1, 2]
    versions = client.get("/collectives/default").json()["versions"]
    assert [(v["number"], v["parent"]) for v in versions] == [(1, None), (2, 1)]
    assert "shared" in versions[1]["label_space"] and len(versions[1]["label_space"]) == 5
    assert len(client.get("/learngenes").json()["items"]) == 2

    # Individual training spreads over both workers: while one trains, the other takes the next job.
    def order(seed: int) -> dict:
        r = client.post("/individuals", files={"file": ("s.npz", make_task(["p", "q", "r"], 5, seed=seed))},
                        data={"epochs": "40", "seed": str(seed)})
        assert r.status_code == 202, r.text
        return r.json()

    with ThreadPoolExecutor(2) as pool:
        orders = list(pool.map(order, [1, 2]))
    trained = [kit.wait_job(client, o["id"]) for o in orders]
    assert [t["status"] for t in trained] == ["succeeded", "succeeded"], trained
    assert {t["worker"].split("@")[0] for t in trained} == {"w1", "w2"}
    assert all(t["attempts"] == 1 for t in trained + done)
