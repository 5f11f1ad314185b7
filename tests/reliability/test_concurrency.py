"""Many real HTTP clients at once against a real uvicorn API and two real worker processes (PostgreSQL +
Redis): every request answered without a 5xx, every job final, one chain of collective versions, and a
retried request with the same Idempotency-Key gets the same job (409 while the first is in flight, then the
same job)."""
from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

pytestmark = pytest.mark.integration
KEY = "lgk_concurrency-write-key"
SIZE = 8  # tiny images: this is about the service, not the training


def test_ten_clients_at_once_all_jobs_final_and_one_version_chain(tmp_path, pg_url, redis_broker, kit, make_task):
    port = kit.free_port()
    settings = {
        "database_url": pg_url, "broker_url": redis_broker.url, "data_dir": tmp_path / "var",
        "redis_key_prefix": f"{redis_broker.prefix}{tmp_path.name}:", "port": port, "extract_method": "gradient",
        "worker_heartbeat_s": 1, "progress_interval_s": 0.5, "api_key": KEY,
        "max_concurrent_uploads": 32,  # all 24 at once are taken (past the cap they would get 503 + Retry-After)
    }
    api = kit.spawn(["-m", "service", "api"], settings, tmp_path / "api.log")
    procs = [api]
    statuses: Counter[int] = Counter()
    try:
        kit.wait_http(f"http://127.0.0.1:{port}/healthz", proc=api, log=tmp_path / "api.log")
        procs += [kit.spawn(["-m", "workers", "-n", f"w{i}@%h"], settings, tmp_path / f"w{i}.log") for i in (1, 2)]
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {KEY}"}

        def post(path: str, files: dict, data: dict, headers: dict | None = None) -> dict:
            with httpx.Client(base_url=base, timeout=60, headers={**auth, **(headers or {})}) as c:
                r = c.post(path, files=files, data=data)
                statuses[r.status_code] += 1
                while r.status_code == 409 and headers:  # the same key still in flight: retry as told
                    time.sleep(float(r.headers["retry-after"]))
                    r = c.post(path, files=files, data=data)
                    statuses[r.status_code] += 1
            assert r.status_code == 202, r.text
            return r.json()

        def task(i: int, key: str | None = None) -> dict:
            data = make_task([f"c{i}a", f"c{i}b", "shared"], 6, size=SIZE, seed=i)
            return post("/tasks", {"file": (f"t{i}.npz", data)}, {"epochs": "1"},
                        {"Idempotency-Key": key} if key else None)

        def individual(i: int) -> dict:
            data = make_task(["p", "q"], 3, size=SIZE, seed=100 + i)
            return post("/individuals", {"file": (f"s{i}.npz", data)}, {"epochs": "1", "seed": str(i)})

        client = httpx.Client(base_url=base, timeout=30)
        first = kit.wait_job(client, task(0)["id"], timeout=120)  # the learngene the individuals need
        assert first["status"] == "succeeded", first

        # 20 individual orders, 3 task uploads and a retry of one upload (same Idempotency-Key), all at once.
        calls = [lambda i=i: individual(i) for i in range(20)] + [
            lambda: task(1), lambda: task(3), lambda: task(2, "upload-2"), lambda: task(2, "upload-2")]
        with ThreadPoolExecutor(len(calls)) as pool:
            futures = [pool.submit(c) for c in calls]
            jobs = [f.result() for f in futures]
        ids = [j["id"] for j in jobs]
        assert ids[-1] == ids[-2]  # the retried upload is the same job
        assert len(set(ids)) == 23
        final = [kit.wait_job(client, i, timeout=180) for i in sorted(set(ids))]
        assert Counter(j["status"] for j in final) == Counter({"succeeded": 23}), final
        assert {j["worker"].split("@")[0] for j in final if j["kind"] == "individual"} <= {"w1", "w2"}

        versions = client.get("/collectives/default").json()["versions"]
        assert [(v["number"], v["parent"]) for v in versions] == [(1, None), (2, 1), (3, 2), (4, 3)]
        assert len(client.get("/learngenes").json()["items"]) == 4
        assert client.get("/jobs", params={"limit": 50}).json()["items"]
        requests = sum(statuses.values())
        assert not [s for s in statuses if s >= 500]
        print(f"\nRELIABILITY concurrency: {requests} concurrent POSTs, statuses {dict(statuses)}, "
              f"{len(final)} jobs final, 0 lost")
    finally:
        for proc in reversed(procs):
            kit.stop(proc)
