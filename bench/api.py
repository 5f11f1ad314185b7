"""Benchmark of the service over HTTP (not a test): catalog latency, prediction throughput, queue overhead.

    python -m bench.api                         # embedded default: SQLite + on-disk broker
    python -m bench.api --database-url postgresql+psycopg://postgres@127.0.0.1/bench \\
                        --broker-url redis://127.0.0.1:6379/0
    python -m bench.api --quick                 # fewer repetitions

It starts the service as `make run` does (`python -m service run`, API + one worker) on a fresh data
directory, grows a collective by one task, then measures:
- p50 / p99 latency of GET /learngenes with 10,000 learngene rows in the registry (first page, a
  filtered page, a deep page by cursor);
- prediction throughput over HTTP for batches of 1 and 64 images, and as a ratio to calling the same
  model in this process;
- time from POST /individuals to `succeeded` for a 5-way 5-shot request, next to the same training
  called directly (the difference is what the queue, the registry and the artifact store cost).
Prints a markdown table and writes var/bench/api.json.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench import drop_redis_keys, write_report
from learngene.datasets import pattern_images as synthetic

ROOT = Path(__file__).resolve().parent.parent


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile_ms(samples: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(samples) * 1000, q)), 2)


def wait_job(client: httpx.Client, job_id: int, poll: float = 0.02, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(poll)
    raise TimeoutError(f"job {job_id} did not finish")


def start_service(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "service", "run"], cwd=ROOT, env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the service did not become ready")


def fill_catalog(database_url: str, rows: int) -> None:
    """Copy the one real learngene row until the catalog holds `rows` (bulk insert, as a busy registry would)."""
    from sqlalchemy import insert, select

    from service.db import make_engine
    from service.models import Learngene

    engine = make_engine(database_url)
    with engine.begin() as conn:
        template = conn.execute(select(Learngene)).mappings().first()
        copy = {k: v for k, v in template.items() if k != "id"}
        conn.execute(insert(Learngene), [{**copy, "tags": [f"copy-{i}"]} for i in range(rows - 1)])
    engine.dispose()


def time_requests(client: httpx.Client, path: str, params: dict, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(path, params=params)
        out.append(time.perf_counter() - t)
        r.raise_for_status()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file (embedded)")
    parser.add_argument("--broker-url", help="default: the on-disk broker (embedded)")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--extract-method", default="gradient", help="learngene choice for the one task grown")
    parser.add_argument("--torch-threads", type=int, help="LEARNGENE_TORCH_THREADS for the service and this process")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "api.json"))
    args = parser.parse_args()
    reps = {"latency": 100 if args.quick else 500, "b1": 50 if args.quick else 300, "b64": 10 if args.quick else 50,
            "train": 1 if args.quick else 5}

    data_dir = Path(tempfile.mkdtemp(prefix="lg-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNGENE_")}
    key = f"lgk_bench-{secrets.token_hex(8)}"  # registered as a write key when the service starts
    env.update(LEARNGENE_DATA_DIR=str(data_dir), LEARNGENE_PORT=str(port), LEARNGENE_EXTRACT_METHOD=args.extract_method,
               LEARNGENE_PROGRESS_INTERVAL_S="0.1", LEARNGENE_API_KEY=key, PYTHONPATH=str(ROOT))
    if args.torch_threads is not None:
        env["LEARNGENE_TORCH_THREADS"] = str(args.torch_threads)
    if args.database_url:
        env["LEARNGENE_DATABASE_URL"] = args.database_url
    if args.broker_url:
        env["LEARNGENE_BROKER_URL"] = args.broker_url
        env["LEARNGENE_REDIS_KEY_PREFIX"] = f"bench-{port}:"
    database_url = args.database_url or f"sqlite:///{data_dir / 'registry.sqlite3'}"
    proc = start_service(env, port, data_dir / "service.log")
    results: dict = {"rows": args.rows, "database": database_url.split(":")[0], "broker": (args.broker_url or
                     "filesystem://").split(":")[0], "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                          headers={"Authorization": f"Bearer {key}"}) as client:
            x, y = synthetic(["a", "b", "c", "d", "e"], 12, seed=0)
            job = client.post("/tasks", files={"file": ("t.npz", npz(x=x, y=y))}, data={"epochs": "2"}).json()
            assert wait_job(client, job["id"])["status"] == "succeeded"

            # 1. Catalog latency with many rows.
            fill_catalog(database_url, args.rows)
            assert len(client.get("/learngenes", params={"limit": 500}).json()["items"]) == 500
            time_requests(client, "/learngenes", {}, 20)  # warm up
            first = time_requests(client, "/learngenes", {}, reps["latency"])
            filtered = time_requests(client, "/learngenes", {"collective_version": 1, "max_parameters": 10**9},
                                     reps["latency"])
            page = client.get("/learngenes", params={"limit": 50})
            for _ in range(100):  # walk to page 100
                page = client.get("/learngenes", params={"limit": 50, "cursor": page.json()["next_cursor"]})
            deep = time_requests(client, "/learngenes", {"cursor": page.json()["next_cursor"]}, reps["latency"])
            results["catalog_ms"] = {name: {"p50": percentile_ms(s, 50), "p99": percentile_ms(s, 99)}
                                     for name, s in (("first_page", first), ("filtered", filtered),
                                                     ("page_100", deep))}

            # 2. Queue overhead: 5-way 5-shot over HTTP, then the same training in this process (medians).
            target = ["p", "q", "r", "s", "t"]
            sx, sy = synthetic(target, 5, seed=1)
            http_times, orders = [], []
            for _ in range(reps["train"]):
                t0 = time.perf_counter()
                order = client.post("/individuals", files={"file": ("s.npz", npz(x=sx, y=sy))},
                                    data={"seed": "0"}).json()
                done = wait_job(client, order["id"])
                http_times.append(time.perf_counter() - t0)
                assert done["status"] == "succeeded", done
                orders.append(done)
            individual = client.get(f"/individuals/{orders[-1]['result']['individual_id']}").json()
            gene_bytes = client.get(f"/learngenes/{individual['learngene_id']}/weights").content

            from learngene import Individual, Learngene, TrainOptions, load_dataset, train_individual
            from service.settings import Settings

            Settings(**({"torch_threads": args.torch_threads} if args.torch_threads is not None else {})
                     ).apply_torch_threads()  # the same thread count as the service's worker: a fair comparison
            support = load_dataset(npz(x=sx, y=sy))
            train_individual(support, Learngene.from_bytes(gene_bytes), TrainOptions(seed=0, epochs=1))  # warm up
            direct_times = []
            for _ in range(reps["train"]):
                t0 = time.perf_counter()
                # As the worker does: load the learngene from its bytes, train, serialise the result.
                train_individual(support, Learngene.from_bytes(gene_bytes), TrainOptions(seed=0)).to_bytes()
                direct_times.append(time.perf_counter() - t0)
            http_train, direct_train = float(np.median(http_times)), float(np.median(direct_times))
            results["individual_5way_5shot_s"] = {
                "http_post_to_succeeded": round(http_train, 3), "direct_training": round(direct_train, 3),
                "overhead": round(http_train - direct_train, 3), "ratio": round(http_train / direct_train, 3),
                "epochs": individual["options"]["epochs"], "repetitions": reps["train"],
            }

            # 3. Predictions: HTTP against in-process, batches of 1 and 64.
            model = Individual.from_bytes(client.get(f"/individuals/{individual['id']}/weights").content)
            qx, _ = synthetic(target, 13, seed=2)
            results["predictions"] = {}
            for batch, n in ((1, reps["b1"]), (64, reps["b64"])):
                images = qx[:batch]
                body = npz(x=images)
                url = f"/individuals/{individual['id']}/predictions"
                for _ in range(3):  # warm up both paths (model cache, allocator)
                    client.post(url, files={"file": ("x.npz", body)}).raise_for_status()
                    model.predict(images)
                t0 = time.perf_counter()
                for _ in range(n):
                    client.post(url, files={"file": ("x.npz", body)}).raise_for_status()
                http_rate = n * batch / (time.perf_counter() - t0)
                t0 = time.perf_counter()
                for _ in range(n):
                    model.predict(images)
                local_rate = n * batch / (time.perf_counter() - t0)
                results["predictions"][f"batch_{batch}"] = {
                    "http_images_per_s": round(http_rate, 1), "in_process_images_per_s": round(local_rate, 1),
                    "http_over_in_process": round(http_rate / local_rate, 3)}
    finally:
        proc.send_signal(signal.SIGTERM)  # the service stops its worker, then itself
        proc.wait(60)
        shutil.rmtree(data_dir, ignore_errors=True)
        if args.broker_url:
            drop_redis_keys(args.broker_url, env["LEARNGENE_REDIS_KEY_PREFIX"])

    write_report(results, args.out, table)


def table(r: dict) -> str:
    c, t, p = r["catalog_ms"], r["individual_5way_5shot_s"], r["predictions"]
    lines = [
        f"Service benchmark: {r['database']} registry, {r['broker']} broker, {r['cpus']} CPUs",
        "",
        "| measure | value |",
        "|---|---|",
        f"| GET /learngenes, first page, {r['rows']:,} rows: p50 / p99 | {c['first_page']['p50']} / "
        f"{c['first_page']['p99']} ms |",
        f"| GET /learngenes, filtered: p50 / p99 | {c['filtered']['p50']} / {c['filtered']['p99']} ms |",
        f"| GET /learngenes, page 100 by cursor: p50 / p99 | {c['page_100']['p50']} / {c['page_100']['p99']} ms |",
    ]
    for batch in ("batch_1", "batch_64"):
        b = p[batch]
        lines.append(f"| predictions, {batch.replace('_', ' ')}: HTTP / in-process | {b['http_images_per_s']} / "
                     f"{b['in_process_images_per_s']} images/s (ratio {b['http_over_in_process']}) |")
    lines.append(f"| individual 5-way 5-shot ({t['epochs']} epochs, median of {t['repetitions']}): POST to succeeded / "
                 f"direct training | "
                 f"{t['http_post_to_succeeded']} / {t['direct_training']} s (overhead {t['overhead']} s, "
                 f"ratio {t['ratio']}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
