"""Scaling benchmark (not a test): individual jobs per minute with 1, 2 and 4 worker processes, and what the S3
artifact store adds to a job against the local folder.

    python -m bench.scale --quick          # make bench-scale; ~6 min on 2 cores (--quick: fewer, shorter jobs)
    python -m bench.scale --pg postgresql://postgres@127.0.0.1:5432 --redis redis://127.0.0.1:6379/0

Real parts throughout: the API (`python -m service api`) and worker processes (`python -m workers`) over HTTP,
Celery on Redis, PostgreSQL (a fresh database per backend, dropped at the end) and, for the S3 backend, moto's
S3 server (`moto[server]`, the test extra) over HTTP on this host, standing in for MinIO. With S3 every worker
has its own data folder and cache, as on separate hosts; with the local folder all share one.

1. Per backend (local, s3): one task grows a collective, then N individual orders go to 1 worker; per-job
   time is the job's own `finished_at - started_at` (claim to commit: loading, training, storing), median;
   the S3 backend's added latency per job is the difference of the medians (and their ratio). Training
   time varies more than the store's share, so the store's own work per job is also timed directly:
   what an individual job does with it (read the learngene and the support set, write the model: the same
   bytes), local folder against S3 with an empty cache and with a warm one, median of repeats.
2. S3 backend: the same N orders with 2 and 4 worker processes: jobs per minute from first order to last
   end, and the speed-up over 1 worker.
3. DDP step times (1 and 2 processes) from bench/ddp.py when it is there (see DDP HOOK below).
Prints a markdown table and writes var/bench/scale.json.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx

from bench import drop_redis_keys, git_commit, write_report
from bench.api import free_port, npz, wait_job
from bench.load import spawn, stop, wait_ready
from learngene.datasets import pattern_images as synthetic

ROOT = Path(__file__).resolve().parent.parent

# ---- DDP HOOK: bench/ddp.py (issue 13, part B) times DistributedDataParallel steps; its rows join this report.
# ddp_step_times(steps=, warmup=) -> [{"mode", "processes", "backend", "device", "threads_per_rank",
# "median_step_s", "samples_per_s", "step_ratio_to_first", ...}]. Absent (ImportError): "not measured".
try:
    from bench.ddp import ddp_step_times  # type: ignore[attr-defined]
except ImportError:
    ddp_step_times = None


class S3Server:
    """moto's standalone server on a free port (the tests' fixture does the same)."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        self.env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}", "AWS_ACCESS_KEY_ID": "bench",
                    "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(self.env["AWS_ENDPOINT_URL"], timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"moto did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.2)
        import boto3

        self.bucket = "bench"
        boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id="bench", aws_secret_access_key="bench").create_bucket(Bucket=self.bucket)


def store_ops(store, gene: bytes, support: bytes, model: bytes, repeats: int, cold: bool) -> dict:
    """Median seconds of one job's store work: get(learngene) + get(support) + put(a new model of that size)."""
    gene_sha, support_sha = store.put(gene), store.put(support)
    times = []
    for _ in range(repeats):
        if cold:  # an empty cache: every read goes to the bucket, as on a worker that never saw them
            store.cache.discard(gene_sha)
            store.cache.discard(support_sha)
        fresh = model + os.urandom(16)  # new content: a real write, not the skipped put of known bytes
        start = time.perf_counter()
        store.get(gene_sha)
        store.get(support_sha)
        store.put(fresh)
        times.append(time.perf_counter() - start)
    return {"ms_median": round(statistics.median(times) * 1000, 2), "repeats": repeats}


def measure_store(folder: Path, s3: "S3Server", client: httpx.Client, support: bytes, repeats: int) -> dict:
    from service.artifact_cache import ArtifactCache
    from service.artifacts import ArtifactStore
    from service.s3store import S3ArtifactStore

    gene = client.get("/learngenes").json()["items"][0]
    ind = client.get("/individuals").json()["items"][0]
    gene_bytes = client.get(f"/learngenes/{gene['id']}/weights").content
    model_bytes = client.get(f"/individuals/{ind['id']}/weights").content
    os.environ.update(s3.env)
    cache = ArtifactCache(folder / "ops-cache", 1 << 30)
    remote = S3ArtifactStore(s3.bucket, "ops", cache, folder / "ops-staging")
    out = {"bytes": {"learngene": len(gene_bytes), "support": len(support), "model": len(model_bytes)},
           "local": store_ops(ArtifactStore(folder / "ops-local"), gene_bytes, support, model_bytes, repeats, False),
           "s3_cold": store_ops(remote, gene_bytes, support, model_bytes, repeats, True),
           "s3_warm": store_ops(remote, gene_bytes, support, model_bytes, repeats, False)}
    out["s3_cold_added_ms"] = round(out["s3_cold"]["ms_median"] - out["local"]["ms_median"], 2)
    return out


def create_database(pg: str, name: str) -> str:
    import psycopg

    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{pg.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"


def drop_database(pg: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seconds(job: dict) -> float:
    return (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()


def orders_round(client: httpx.Client, support: bytes, orders: int, epochs: int) -> dict:
    """`orders` individual orders sent at once; jobs per minute from the first order to the last end."""
    start = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda i: client.post("/individuals", files={"file": ("s.npz", support)},
                                                  data={"epochs": str(epochs), "seed": str(i)}).json()["id"],
                            range(orders)))
    done = [wait_job(client, i, poll=0.1) for i in ids]
    elapsed = time.monotonic() - start
    assert all(j["status"] == "succeeded" for j in done), [j for j in done if j["status"] != "succeeded"]
    per_job = [seconds(j) for j in done]
    return {"orders": orders, "epochs": epochs, "seconds": round(elapsed, 1),
            "per_minute": round(orders / elapsed * 60, 1), "job_s_median": round(statistics.median(per_job), 3),
            "workers_used": len({j["worker"] for j in done})}


class Deployment:
    """One API and any number of workers on one backend; workers are added and removed between rounds."""

    def __init__(self, name: str, env: dict[str, str], folder: Path, s3: bool) -> None:
        self.name, self.env, self.folder, self.s3 = name, env, folder, s3
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = spawn(["-m", "service", "api"], self.process_env("api"), folder / f"{name}-api.log")
        wait_ready(self.url, self.api, folder / f"{name}-api.log")
        self.workers: list[subprocess.Popen] = []

    def process_env(self, who: str) -> dict[str, str]:
        env = {**self.env, "LEARNGENE_PORT": str(self.port)}
        if self.s3:  # a folder of its own, as on another host; with the local backend all share data_dir
            env["LEARNGENE_DATA_DIR"] = str(self.folder / f"{self.name}-{who}")
        return env

    def scale_to(self, n: int, client: httpx.Client) -> None:
        while len(self.workers) > n:
            stop(self.workers.pop())
        while len(self.workers) < n:
            i = len(self.workers) + 1
            self.workers.append(spawn(["-m", "workers", "-n", f"w{i}@%h"], self.process_env(f"w{i}"),
                                      self.folder / f"{self.name}-w{i}.log"))
        deadline = time.monotonic() + 180
        while client.get("/readyz").json().get("workers", 0) != n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n} workers did not report in")
            time.sleep(0.5)

    def close(self) -> None:
        for proc in [*self.workers, self.api]:
            stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="server URL, no database")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "scale.json"))
    args = parser.parse_args()
    orders, epochs = (8, 60) if args.quick else (16, 120)
    run = uuid.uuid4().hex[:6]
    folder = Path(tempfile.mkdtemp(prefix="lg-scale-"))
    base = {k: v for k, v in os.environ.items() if not k.startswith("LEARNGENE_")}
    base.update({"LEARNGENE_AUTH": "off", "LEARNGENE_EXTRACT_METHOD": "gradient", "LEARNGENE_BROKER_URL": args.redis,
                 "LEARNGENE_WORKER_HEARTBEAT_S": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                 "LEARNGENE_DATA_DIR": str(folder / "shared")})
    x, labels = synthetic(["a", "b", "c", "d", "e"], 12, size=16, seed=0)
    task = npz(x=x, y=labels)
    xs, ys = synthetic(["a", "b", "c"], 5, size=16, seed=1)
    support = npz(x=xs, y=ys)
    results: dict = {"cpus": os.cpu_count(), "python": platform.python_version(), "quick": args.quick,
                     "commit": git_commit(), "orders": orders, "epochs": epochs,
                     "s3_server": "moto (Python) over HTTP on this host", "rounds": []}
    databases: list[str] = []
    s3 = None
    try:
        s3 = S3Server(folder / "moto.log")
        for backend, workers in (("local", (1,)), ("s3", (1, 2, 4))):
            name = f"lg_scale_{run}_{backend}"
            env = {**base, "LEARNGENE_DATABASE_URL": create_database(args.pg, name),
                   "LEARNGENE_REDIS_KEY_PREFIX": f"lgscale-{run}-{backend}:"}
            databases.append(name)
            if backend == "s3":
                env.update(s3.env, LEARNGENE_ARTIFACT_URL=f"s3://{s3.bucket}/{run}")
            subprocess.run([sys.executable, "-m", "service", "migrate"], cwd=ROOT, env=env, check=True)
            deployment = Deployment(backend, env, folder, s3=backend == "s3")
            try:
                with httpx.Client(base_url=deployment.url, timeout=120) as client:
                    deployment.scale_to(1, client)
                    grow = client.post("/tasks", files={"file": ("t.npz", task)}, data={"epochs": "2"}).json()
                    assert wait_job(client, grow["id"], poll=0.1)["status"] == "succeeded"
                    for n in workers:
                        deployment.scale_to(n, client)
                        row = {"backend": backend, "workers": n, **orders_round(client, support, orders, epochs)}
                        results["rounds"].append(row)
                        print(row, flush=True)
                    if backend == "s3":
                        results["store_ops"] = measure_store(folder, s3, client, support, 10 if args.quick else 30)
            finally:
                deployment.close()
        if ddp_step_times is not None:  # DDP HOOK: bench/ddp.py's quick and full step counts
            results["ddp"] = ddp_step_times(steps=30, warmup=15) if args.quick else ddp_step_times(steps=100, warmup=20)
    finally:
        if s3 is not None:
            stop(s3.proc)
        for name in databases:
            drop_database(args.pg, name)
        drop_redis_keys(args.redis, f"lgscale-{run}-")
        logs = Path(args.out).parent / "scale-logs"
        logs.mkdir(parents=True, exist_ok=True)
        for log in folder.glob("*.log"):
            shutil.copy(log, logs / log.name)
        shutil.rmtree(folder, ignore_errors=True)
    summarise(results)
    write_report(results, args.out, table)


def summarise(r: dict) -> None:
    rounds = {(x["backend"], x["workers"]): x for x in r["rounds"]}
    local, s3 = rounds.get(("local", 1)), rounds.get(("s3", 1))
    if local and s3:
        r["s3_added_s_per_job"] = round(s3["job_s_median"] - local["job_s_median"], 3)
        r["s3_job_time_ratio"] = round(s3["job_s_median"] / local["job_s_median"], 3)
    if s3:
        r["speedup"] = {str(n): round(rounds[("s3", n)]["per_minute"] / s3["per_minute"], 2)
                        for n in (1, 2, 4) if ("s3", n) in rounds}


def table(r: dict) -> str:
    lines = [f"Scaling, {r['orders']} individual orders of {r['epochs']} epochs per round; {r['cpus']} CPUs "
             f"(the limit: past 2 worker processes they share 2 cores); S3 = {r['s3_server']}", "",
             "| backend | workers | jobs/min | speed-up | job time median (s) | workers used | round (s) |",
             "|---|---|---|---|---|---|---|"]
    for x in r["rounds"]:
        speed = r.get("speedup", {}).get(str(x["workers"]), "") if x["backend"] == "s3" else ""
        lines.append(f"| {x['backend']} | {x['workers']} | {x['per_minute']} | {speed} | {x['job_s_median']} | "
                     f"{x['workers_used']} | {x['seconds']} |")
    if "s3_added_s_per_job" in r:
        lines += ["", f"S3 backend's added time per job (1 worker, medians): {r['s3_added_s_per_job']} s "
                      f"(ratio {r['s3_job_time_ratio']})"]
    if "store_ops" in r:
        o = r["store_ops"]
        b = o["bytes"]
        lines += ["", f"The store's work in one individual job (get learngene {b['learngene']} B + get support "
                      f"{b['support']} B + put model {b['model']} B), median of {o['local']['repeats']}:",
                  "| local folder | S3, empty cache | S3, warm cache | S3 added (empty cache) |", "|---|---|---|---|",
                  f"| {o['local']['ms_median']} ms | {o['s3_cold']['ms_median']} ms | {o['s3_warm']['ms_median']} ms | "
                  f"{o['s3_cold_added_ms']} ms |"]
    lines += ["", "DDP step time (bench/ddp.py):"]
    if r.get("ddp"):
        lines += ["| run | processes | backend | device | threads/rank | step (ms, median) | samples/s | vs first |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {d.get('mode')} | {d.get('processes')} | {d.get('backend')} | {d.get('device')} | "
                  f"{d.get('threads_per_rank')} | {round(d['median_step_s'] * 1000, 2)} | {d.get('samples_per_s')} | "
                  f"{d.get('step_ratio_to_first')} |" for d in r["ddp"]]
    else:
        lines.append("not measured here (bench/ddp.py absent)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
