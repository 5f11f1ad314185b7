"""Load benchmark of the service over HTTP (not a test): predictions under concurrency, job throughput, upload memory.

    python -m bench.load                        # embedded default: SQLite + on-disk broker (~4 min)
    python -m bench.load --quick                # shorter runs, 16 uploads of 10 MB (~1.5 min)
    python -m bench.load --database-url postgresql+psycopg://postgres@127.0.0.1/bench \\
                         --broker-url redis://127.0.0.1:6379/0

On a fresh data directory it starts the API (`python -m service api`) and worker processes (`python -m workers`),
grows a collective by one task and trains one individual, then measures:
- predictions per second and p50 / p99 latency at 1, 8 and 64 concurrent clients (one image per request),
  with dynamic batching (the default) and without (LEARNGENE_PREDICT_BATCH=1: one forward pass per request),
  the two APIs sharing the registry in the same run;
- individual jobs per minute with 1 and with 2 worker processes (the same orders each time);
- the API process's peak memory (VmHWM) while N clients upload a task of M MB each at once, with how many
  were taken and how many were told 503 (LEARNGENE_MAX_CONCURRENT_UPLOADS).
Prints a markdown table and writes var/bench/load.json.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench import drop_redis_keys, write_report
from bench.api import free_port, npz, percentile_ms, wait_job
from learngene.datasets import pattern_images as synthetic

ROOT = Path(__file__).resolve().parent.parent


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not start")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def predictions(url: str, individual: int, clients: int, seconds: float) -> dict:
    """`clients` concurrent clients, each sending one-image requests back to back for `seconds`."""
    image = npz(x=np.random.default_rng(0).integers(0, 255, (1, 16, 16), dtype=np.uint8))
    latencies: list[float] = []
    refused = errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        deadline = time.monotonic() + seconds

        async def one_client() -> None:
            nonlocal refused, errors
            while time.monotonic() < deadline:
                t = time.perf_counter()
                try:
                    r = await client.post(f"/individuals/{individual}/predictions",
                                          files={"file": ("x.npz", image)})
                except httpx.TransportError:  # counted, not hidden: the table shows them
                    errors += 1
                    continue
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t)
                else:
                    refused += 1

        start = time.monotonic()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.monotonic() - start
    return {"clients": clients, "requests": len(latencies), "refused": refused, "errors": errors,
            "per_s": round(len(latencies) / elapsed, 1), "p50_ms": percentile_ms(latencies, 50),
            "p99_ms": percentile_ms(latencies, 99)}


def jobs_per_minute(client: httpx.Client, support: bytes, orders: int, epochs: int) -> dict:
    start = time.monotonic()
    ids = [client.post("/individuals", files={"file": ("s.npz", support)},
                       data={"epochs": str(epochs), "seed": str(i)}).json()["id"] for i in range(orders)]
    done = [wait_job(client, i, poll=0.1) for i in ids]
    elapsed = time.monotonic() - start
    assert all(j["status"] == "succeeded" for j in done), done
    return {"orders": orders, "epochs": epochs, "seconds": round(elapsed, 1),
            "per_minute": round(orders / elapsed * 60, 1)}


async def uploads(url: str, pid: int, clients: int, megabytes: int) -> dict:
    per_image = 64 * 64
    n = megabytes * 1024 * 1024 // per_image
    x = np.random.default_rng(1).integers(0, 255, (n, 64, 64), dtype=np.uint8)
    body = npz(x=x, y=np.arange(n) % 4)
    before = peak_rss_mb(pid)
    codes: list[int | str] = []
    async with httpx.AsyncClient(base_url=url, timeout=300,
                                 limits=httpx.Limits(max_connections=clients)) as client:
        async def one(i: int) -> None:
            try:
                r = await client.post("/tasks", files={"file": (f"big{i}.npz", body)}, data={"epochs": "1"})
                codes.append(r.status_code)
            except httpx.HTTPError as e:  # a refused upload may be cut off while its body is still being sent
                codes.append(type(e).__name__)

        await asyncio.gather(*(one(i) for i in range(clients)))
    return {"clients": clients, "megabytes": round(len(body) / 2**20, 1), "accepted": codes.count(202),
            "refused_503": codes.count(503), "other": [c for c in codes if c not in (202, 503)],
            "api_peak_rss_mb_before": before, "api_peak_rss_mb": peak_rss_mb(pid)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--database-url")
    parser.add_argument("--broker-url")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "load.json"))
    args = parser.parse_args()
    seconds = 2.0 if args.quick else 6.0
    orders, epochs = (4, 5) if args.quick else (8, 10)
    upload_clients, upload_mb = (16, 10) if args.quick else (64, 50)

    data = Path(tempfile.mkdtemp(prefix="lg-load-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNGENE_")}
    env.update({"LEARNGENE_DATA_DIR": str(data), "LEARNGENE_AUTH": "off", "LEARNGENE_EXTRACT_METHOD": "gradient",
                "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    if args.database_url:
        env["LEARNGENE_DATABASE_URL"] = args.database_url
    if args.broker_url:
        env["LEARNGENE_BROKER_URL"] = args.broker_url
        env["LEARNGENE_REDIS_KEY_PREFIX"] = f"lgload-{os.getpid()}:"
    subprocess.run([sys.executable, "-m", "service", "migrate"], cwd=ROOT, env=env, check=True)
    port, port_unbatched = free_port(), free_port()
    url, url_unbatched = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port_unbatched}"
    procs: list[subprocess.Popen] = []
    results: dict = {"database": "postgresql" if args.database_url else "sqlite",
                     "broker": "redis" if args.broker_url else "filesystem", "cpus": os.cpu_count(),
                     "python": platform.python_version(), "quick": args.quick}
    try:
        api = spawn(["-m", "service", "api"], {**env, "LEARNGENE_PORT": str(port)}, data / "api.log")
        unbatched = spawn(["-m", "service", "api"], {**env, "LEARNGENE_PORT": str(port_unbatched),
                                                     "LEARNGENE_PREDICT_BATCH": "1"}, data / "api-unbatched.log")
        procs += [api, unbatched]
        wait_ready(url, api, data / "api.log")
        wait_ready(url_unbatched, unbatched, data / "api-unbatched.log")
        procs.append(spawn(["-m", "workers", "-n", "w1@%h"], env, data / "w1.log"))
        with httpx.Client(base_url=url, timeout=120) as client:
            x, labels = synthetic(["a", "b", "c", "d", "e"], 12, size=16, seed=0)
            grow = client.post("/tasks", files={"file": ("t.npz", npz(x=x, y=labels))}, data={"epochs": "2"}).json()
            assert wait_job(client, grow["id"], poll=0.1)["status"] == "succeeded"
            xs, ys = synthetic(["a", "b", "c"], 5, size=16, seed=1)
            support = npz(x=xs, y=ys)
            first = client.post("/individuals", files={"file": ("s.npz", support)}, data={"epochs": "2"}).json()
            individual = wait_job(client, first["id"], poll=0.1)["result"]["individual_id"]

            rows = []
            for clients in (1, 8, 64):
                for mode, base in (("batched", url), ("unbatched", url_unbatched)):
                    rows.append({"mode": mode, **asyncio.run(predictions(base, individual, clients, seconds))})
            results["predictions"] = rows

            results["jobs"] = {"1_worker": jobs_per_minute(client, support, orders, epochs)}
            procs.append(spawn(["-m", "workers", "-n", "w2@%h"], env, data / "w2.log"))
            time.sleep(3)  # the second worker starts and subscribes
            results["jobs"]["2_workers"] = jobs_per_minute(client, support, orders, epochs)
        for worker in procs[2:]:
            stop(worker)
        results["uploads"] = asyncio.run(uploads(url, api.pid, upload_clients, upload_mb))
    finally:
        for proc in procs:
            stop(proc)
        logs = Path(args.out).parent / "load-logs"
        logs.mkdir(parents=True, exist_ok=True)
        for log in data.glob("*.log"):
            shutil.copy(log, logs / log.name)
        shutil.rmtree(data, ignore_errors=True)
        if args.broker_url:  # only this run's keys
            drop_redis_keys(args.broker_url, env["LEARNGENE_REDIS_KEY_PREFIX"])
    write_report(results, args.out, table)


def table(r: dict) -> str:
    lines = [f"Load benchmark: {r['database']} registry, {r['broker']} broker, {r['cpus']} CPUs"
             + (" (quick)" if r["quick"] else ""), "",
             "| predictions, 1 image per request | clients | requests/s | p50 ms | p99 ms | 503s | connection errors |",
             "|---|---|---|---|---|---|---|"]
    by = {(p["mode"], p["clients"]): p for p in r["predictions"]}
    for (mode, clients), p in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(f"| {mode} | {clients} | {p['per_s']} | {p['p50_ms']} | {p['p99_ms']} | {p['refused']} | "
                     f"{p['errors']} |")
    lines += ["", "| clients | batched / unbatched requests/s |", "|---|---|"]
    for clients in (1, 8, 64):
        b, u = by[("batched", clients)], by[("unbatched", clients)]
        lines.append(f"| {clients} | {round(b['per_s'] / max(u['per_s'], 1e-9), 2)} |")
    j, u = r["jobs"], r["uploads"]
    lines += ["", "| measure | value |", "|---|---|",
              f"| individual jobs per minute, 1 worker ({j['1_worker']['orders']} orders, {j['1_worker']['epochs']} "
              f"epochs) | {j['1_worker']['per_minute']} |",
              f"| individual jobs per minute, 2 workers | {j['2_workers']['per_minute']} (ratio "
              f"{round(j['2_workers']['per_minute'] / j['1_worker']['per_minute'], 2)}) |",
              f"| API peak RSS, {u['clients']} concurrent uploads of {u['megabytes']} MB | "
              f"{u['api_peak_rss_mb']} MB (before: {u['api_peak_rss_mb_before']} MB; {u['accepted']} taken, "
              f"{u['refused_503']} told 503, other: {u['other'] or 'none'}) |"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
