"""Benchmark of what clients and browsers see (not a test): job-end notice, plot images, dashboard pages.

    python -m bench.ui            # full (~2 min on 2 cores)
    python -m bench.ui --quick    # fewer jobs and repetitions (~1 min)

It starts the service as `make run` does (`python -m service run`, API + one worker, shipped defaults:
events poll 0.5 s, Retry-After 2 s) on a fresh data directory, grows a few collectives by one small task
each, then measures over HTTP:
1. How soon a client learns that a job ended: individual jobs (5-way 5-shot, 3–120 epochs drawn per
   round) followed in turn by (a) `Client.wait` over the event stream, (b) polling GET /jobs/{id} as
   Retry-After advises, (c) polling every 0.1 s; the delay from the job's `finished_at` (server clock,
   same machine) to the client returning, and the HTTP requests each method made per job.
2. Plot images: each PNG route cold (first request for a key: rendered), again (LRU hit) and with
   If-None-Match (304).
3. Dashboard pages against the JSON endpoint reading the same rows (requests interleaved).
Prints a markdown table and writes var/bench/ui.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np

from bench.api import ROOT, free_port, npz, percentile_ms, start_service, wait_job
from learngene.datasets import pattern_images as synthetic
from learngene_client import Client

FINAL = ("succeeded", "failed", "cancelled")
TIGHT_POLL_S = 0.1
METHODS = ("sse", "retry_after", "tight_poll")


def _timestamp(value: str) -> float:
    when = datetime.fromisoformat(value)
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


class Counted:
    """An httpx.Client that counts the requests it sends (reset per job)."""

    def __init__(self, url: str, token: str) -> None:
        self.requests = 0
        self.http = httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {token}"},
                                 event_hooks={"request": [self._count]})

    def _count(self, _request: httpx.Request) -> None:
        self.requests += 1


def follow(method: str, http: httpx.Client, job_id: int) -> str:
    """Wait for the job to end the way `method` does; the final status."""
    if method == "sse":
        return Client(http=http).wait(job_id, timeout=300).status
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        response = http.get(f"/jobs/{job_id}")
        response.raise_for_status()
        status = response.json()["status"]
        if status in FINAL:
            return status
        time.sleep(float(response.headers.get("Retry-After", "1")) if method == "retry_after" else TIGHT_POLL_S)
    raise TimeoutError(f"job {job_id} did not finish")


def job_end_notice(counted: Counted, support: bytes, rounds: int, epochs: tuple[int, int]) -> dict:
    """Rounds of one job per method, interleaved; per method the delays (s) and requests per job.

    Each round draws its epochs (the same for its three jobs): with one fixed job length, the job would end
    at the same phase of every poll interval (events poll, Retry-After, 0.1 s) and each method's delay would
    be one constant, not a distribution (a 0.4 s job polled every 2 s is always seen 1.6 s late). The
    range makes jobs of about 0.4 to 3.5 s here: more than one Retry-After interval."""
    rng = np.random.default_rng(0)
    samples = {m: {"delay_s": [], "requests": [], "job_s": []} for m in METHODS}
    for _ in range(rounds):
        round_epochs = int(rng.integers(epochs[0], epochs[1] + 1))
        for method in METHODS:
            job = counted.http.post("/individuals", files={"file": ("s.npz", support)},
                                    data={"epochs": str(round_epochs), "seed": "0"})
            job.raise_for_status()
            job_id = job.json()["id"]
            counted.requests = 0
            status = follow(method, counted.http, job_id)
            returned = time.time()
            requests = counted.requests
            assert status == "succeeded", (job_id, status)
            done = counted.http.get(f"/jobs/{job_id}").json()
            s = samples[method]
            s["delay_s"].append(returned - _timestamp(done["finished_at"]))
            s["requests"].append(requests)
            s["job_s"].append(_timestamp(done["finished_at"]) - _timestamp(done["created_at"]))
    sse = float(np.median(samples["sse"]["delay_s"]))
    out = {}
    for method, s in samples.items():
        median = float(np.median(s["delay_s"]))
        out[method] = {"median_delay_ms": round(median * 1000, 1), "p90_delay_ms": percentile_ms(s["delay_s"], 90),
                       "max_delay_ms": round(max(s["delay_s"]) * 1000, 1),
                       "ratio_to_sse": round(median / sse, 2) if sse > 0 else None,
                       "median_requests_per_job": float(np.median(s["requests"])),
                       "median_job_s": round(float(np.median(s["job_s"])), 2), "jobs": len(s["delay_s"]),
                       "delays_ms": [round(d * 1000, 1) for d in s["delay_s"]], "requests": s["requests"],
                       "job_s": [round(d, 2) for d in s["job_s"]]}
    return out


def timed_get(http: httpx.Client, path: str, headers: dict | None = None, expect: int = 200) -> tuple[float,
                                                                                                   httpx.Response]:
    t = time.perf_counter()
    response = http.get(path, headers=headers)
    elapsed = time.perf_counter() - t
    assert response.status_code == expect, (path, response.status_code, response.text[:200])
    return elapsed, response


def plot_images(http: httpx.Client, targets: dict[str, list[str]], reps: int) -> dict:
    """For each route: cold (first request per key), LRU hit and 304 (p50 over repetitions)."""
    out = {}
    for route, paths in targets.items():
        cold, hit, not_modified = [], [], []
        for path in paths:
            elapsed, first = timed_get(http, path)
            assert first.headers["content-type"] == "image/png" and first.content.startswith(b"\x89PNG")
            cold.append(elapsed)
            etag = first.headers["etag"]
            for _ in range(reps):
                hit.append(timed_get(http, path)[0])
                not_modified.append(timed_get(http, path, {"If-None-Match": etag}, expect=304)[0])
        out[route] = {"cold_p50_ms": percentile_ms(cold, 50), "cold_max_ms": round(max(cold) * 1000, 2),
                      "cold_samples": len(cold), "hit_p50_ms": percentile_ms(hit, 50),
                      "not_modified_p50_ms": percentile_ms(not_modified, 50), "repetitions": len(hit),
                      "png_bytes": len(first.content)}
        out[route]["cold_over_hit"] = round(out[route]["cold_p50_ms"] / out[route]["hit_p50_ms"], 1)
    return out


def pages(http: httpx.Client, pairs: list[tuple[str, str, list[str]]], n: int) -> dict:
    """Each page against the JSON request(s) reading its rows, interleaved; p50/p99 and the ratio of p50s."""
    out = {}
    for page, label, json_paths in pairs:
        def html() -> float:
            elapsed, r = timed_get(http, page)
            assert r.headers["content-type"].startswith("text/html")
            return elapsed

        def api() -> float:  # several JSON requests (the overview's rows): their sum, one after the other
            return sum(timed_get(http, p)[0] for p in json_paths)

        for _ in range(5):  # warm up (templates compiled, connections open)
            html(), api()
        h, j = [], []
        for _ in range(n):
            h.append(html())
            j.append(api())
        out[page] = {"json": label, "html_p50_ms": percentile_ms(h, 50), "html_p99_ms": percentile_ms(h, 99),
                     "json_p50_ms": percentile_ms(j, 50), "json_p99_ms": percentile_ms(j, 99), "repetitions": n}
        out[page]["ratio_p50"] = round(out[page]["html_p50_ms"] / out[page]["json_p50_ms"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs and repetitions")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "ui.json"))
    args = parser.parse_args()
    reps = {"rounds": 3 if args.quick else 10, "collectives": 2 if args.quick else 4,
            "plot_reps": 20 if args.quick else 100, "page_reps": 30 if args.quick else 200,
            "curves": 3 if args.quick else 8}
    epochs = (3, 120)  # drawn per round of jobs (job_end_notice says why)

    data_dir = Path(tempfile.mkdtemp(prefix="lg-bench-ui-"))
    port = free_port()
    token = "lgk_bench_" + secrets.token_urlsafe(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNGENE_")}
    env.update(LEARNGENE_DATA_DIR=str(data_dir), LEARNGENE_PORT=str(port), LEARNGENE_API_KEY=token,
               PYTHONPATH=str(ROOT))
    url = f"http://127.0.0.1:{port}"
    from service.settings import Settings

    defaults = Settings()
    results: dict = {"python": platform.python_version(), "cpus": os.cpu_count(), "quick": args.quick,
                     "events_poll_s": defaults.events_poll_s, "retry_after_s": defaults.retry_after_s,
                     "tight_poll_s": TIGHT_POLL_S, "epochs": epochs}
    started = time.perf_counter()
    proc = start_service(env, port, data_dir / "service.log")
    try:
        counted = Counted(url, token)
        http = counted.http
        # A few collectives, one small task each: distinct learngenes, versions and parameter plots.
        collectives = ["default"] + [f"c{i}" for i in range(1, reps["collectives"])]
        grow = []
        for i, name in enumerate(collectives):
            x, y = synthetic(["a", "b", "c", "d", "e"], 12, seed=10 + i)
            r = http.post("/tasks", files={"file": ("t.npz", npz(x=x, y=y))},
                          data={"epochs": "2", "collective": name, "name": f"task-{name}"})
            r.raise_for_status()
            grow.append(r.json()["id"])
        for job_id in grow:
            assert wait_job(http, job_id)["status"] == "succeeded"

        # 1. Job-end notice: SSE, Retry-After polling, tight polling; interleaved.
        sx, sy = synthetic(["p", "q", "r", "s", "t"], 5, seed=1)
        results["job_end"] = job_end_notice(counted, npz(x=sx, y=sy), reps["rounds"], epochs)

        # 2. Plot images. The first plot request after start pays one-time setup (fonts): measured apart,
        # on an individual kept out of the curve samples.
        individuals = [i["id"] for i in http.get("/individuals", params={"limit": 100}).json()["items"]]
        learngenes = [g["id"] for g in http.get("/learngenes", params={"limit": 100}).json()["items"]]
        results["first_plot_after_start_ms"] = round(timed_get(http, f"/individuals/{individuals[0]}/curve.png")[0]
                                                     * 1000, 2)
        targets = {
            "heatmap": [f"/learngenes/{g}/heatmap.png" for g in learngenes],
            "accuracy": [f"/collectives/{c}/versions/1/accuracy.png" for c in collectives],
            "parameters": [f"/collectives/{c}/parameters.png" for c in collectives],
            "curve": [f"/individuals/{i}/curve.png" for i in individuals[1:1 + reps["curves"]]],
        }
        results["plots"] = plot_images(http, targets, reps["plot_reps"])

        # 3. Dashboard pages against the JSON endpoints reading the same rows.
        lg, ind = learngenes[0], individuals[0]
        pairs = [
            ("/ui", "GET /collectives + /learngenes?limit=5 + /jobs?limit=10",
             ["/collectives", "/learngenes?limit=5", "/jobs?limit=10"]),
            ("/ui/learngenes", "GET /learngenes?limit=25", ["/learngenes?limit=25"]),
            (f"/ui/learngenes/{lg}", f"GET /learngenes/{lg}", [f"/learngenes/{lg}"]),
            (f"/ui/individuals/{ind}", f"GET /individuals/{ind}", [f"/individuals/{ind}"]),
            ("/ui/jobs", "GET /jobs?limit=25", ["/jobs?limit=25"]),
        ]
        results["pages"] = pages(http, pairs, reps["page_reps"])
        results["rows"] = {"collectives": len(collectives), "learngenes": len(learngenes),
                           "individuals": len(individuals),
                           "jobs": len(http.get("/jobs", params={"limit": 500}).json()["items"])}
        http.close()
    finally:
        proc.send_signal(signal.SIGTERM)  # the service stops its worker, then itself
        proc.wait(60)
        shutil.rmtree(data_dir, ignore_errors=True)
    results["wall_s"] = round(time.perf_counter() - started, 1)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nwritten to {out}")


NAMES = {"sse": "(a) `Client.wait` (event stream)", "retry_after": "(b) poll GET /jobs/{id}, Retry-After",
         "tight_poll": f"(c) poll GET /jobs/{{id}} every {TIGHT_POLL_S:g} s"}


def table(r: dict) -> str:
    j = r["job_end"]
    lines = [f"UI benchmark: embedded service, {r['cpus']} CPUs, events poll {r['events_poll_s']:g} s, "
             f"Retry-After {r['retry_after_s']} s ({'quick' if r['quick'] else 'full'}, {r['wall_s']} s)", "",
             f"| job end → client knows ({j['sse']['jobs']} jobs each, {r['epochs'][0]}–{r['epochs'][1]} epochs, "
             "interleaved) | "
             "median delay | p90 | vs SSE | requests per job | job (created → finished) |",
             "|---|---|---|---|---|---|"]
    for method in METHODS:
        m = j[method]
        lines.append(f"| {NAMES[method]} | {m['median_delay_ms']} ms | {m['p90_delay_ms']} ms | "
                     f"{m['ratio_to_sse']}× | {m['median_requests_per_job']:g} | {m['median_job_s']} s |")
    lines += ["", "| plot (PNG) | cold p50 (n) | LRU hit p50 | 304 p50 |", "|---|---|---|---|"]
    for route, p in r["plots"].items():
        lines.append(f"| {route} | {p['cold_p50_ms']} ms ({p['cold_samples']}) | {p['hit_p50_ms']} ms | "
                     f"{p['not_modified_p50_ms']} ms |")
    lines.append(f"| first plot request after start | {r['first_plot_after_start_ms']} ms | | |")
    lines += ["", "| page | HTML p50 / p99 | JSON (same rows) p50 / p99 | HTML / JSON |", "|---|---|---|---|"]
    for page, p in r["pages"].items():
        lines.append(f"| {page} | {p['html_p50_ms']} / {p['html_p99_ms']} ms | {p['json_p50_ms']} / "
                     f"{p['json_p99_ms']} ms ({p['json']}) | {p['ratio_p50']}× |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
