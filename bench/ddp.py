"""DDP step time of the collective: one process (today's path) against 1 and 2 data-parallel ranks.

    python -m bench.ddp --quick            # preset small, 32x32, batch 64, 15+30 steps per run (~1 min on 2 cores)
    python -m bench.ddp                    # 20+100 steps per run
    rows = ddp_step_times(processes=(1, 2), steps=30)     # what bench/scale.py calls

Each run starts its ranks the way a grow job does (`learngene.distributed.run_ranks`: one process per rank,
gloo on the CPU, NCCL with one GPU per rank) and times whole steps of the one training loop on the same
global batches: the shard's forward and backward, DDP's gradient all-reduce, the global-batch BatchNorm
all-reduces and the per-step cancel broadcast. The "plain" row runs the same loop in one spawned process
without DDP (LEARNGENE_DDP_PROCESSES=1). Medians over the steps after warm-up; samples/s = global batch /
median step. Prints a table and writes var/bench/ddp.json.

On a machine with C cores and R ranks each rank has C/R cores: with 2 ranks on 2 cores, each rank computes
half the batch on one core, no faster than one process on one core computing all of it, and pays for the
all-reduces on top. Data parallelism pays off when each rank has its own device (a GPU each).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench import ROOT, git_commit, write_report
from learngene.distributed import Parallel, run_ranks
from learngene.model import ConvNet, NetConfig
from learngene.training import train

ENTRY = "bench.ddp:step_rank"


def step_rank(parallel: Parallel, workdir: Path) -> None:
    """Rank entry: train on fixed random global batches, noting when each step starts; rank 0 writes them."""
    cfg = json.loads((workdir / "bench.json").read_text())
    use = parallel if cfg["ddp"] else None
    torch.manual_seed(0)
    net = ConvNet(NetConfig.preset(cfg["preset"], 3, num_classes=cfg["classes"]))
    g = torch.Generator().manual_seed(1)
    n, size = cfg["batch"], cfg["size"]
    batches = [(torch.randn(n, 3, size, size, generator=g), torch.randint(0, cfg["classes"], (n,), generator=g))
               for _ in range(4)]
    starts: list[float] = []

    def draw(step: int):
        starts.append(time.perf_counter())
        return batches[step % len(batches)]

    steps = cfg["warmup"] + cfg["steps"] + 1  # one more: the last timed step ends where it starts
    train(net, draw, steps=steps, lr=1e-3, parallel=use, device=parallel.device,
          should_stop=use.should_stop if use else None)
    if parallel.main:
        (workdir / "starts.json").write_text(json.dumps(starts))


def ddp_step_times(processes: tuple[int, ...] = (1, 2), *, steps: int = 30, warmup: int = 15, preset: str = "small",
                   batch: int = 64, size: int = 32, classes: int = 20, threads: int = 1) -> list[dict]:
    """One row per run: {"mode", "processes", "threads_per_rank", "median_step_s", "samples_per_s", ...}.

    Runs: plain with `threads` torch threads, plain with as many threads as the largest run has ranks (the
    same cores as it, spent on intra-op threads instead), then DDP with each count in `processes`, `threads`
    threads per rank (the service's default LEARNGENE_TORCH_THREADS is 1)."""
    cuda = torch.cuda.is_available() and os.environ.get("LEARNGENE_DEVICE", "cuda").startswith("cuda")
    widest = max(processes) * threads
    runs = [("plain", 1, threads)] + ([("plain", 1, widest)] if widest != threads and not cuda else [])
    runs += [("ddp", p, threads) for p in processes]
    rows = []
    for mode, p, per_rank in runs:
        workdir = Path(tempfile.mkdtemp(prefix="lg-bench-ddp-"))
        try:
            (workdir / "bench.json").write_text(json.dumps({"ddp": mode == "ddp", "preset": preset, "batch": batch,
                                                            "size": size, "classes": classes, "steps": steps,
                                                            "warmup": warmup}))
            run_ranks(ENTRY, p, workdir, timeout_s=600, threads=per_rank, cwd=ROOT)
            starts = json.loads((workdir / "starts.json").read_text())
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        durations = [b - a for a, b in zip(starts[warmup:], starts[warmup + 1:])]
        median = statistics.median(durations)
        rows.append({"mode": mode, "processes": p, "backend": ("nccl" if cuda else "gloo") if mode == "ddp" else "-",
                     "device": "cuda" if cuda else "cpu", "threads_per_rank": per_rank, "global_batch": batch,
                     "steps": len(durations), "median_step_s": round(median, 5),
                     "samples_per_s": round(batch / median, 1)})
    base = rows[0]["median_step_s"]
    for r in rows:
        r["step_ratio_to_first"] = round(r["median_step_s"] / base, 3)
    return rows


def table(r: dict) -> str:
    lines = [f"DDP step time: preset {r['preset']}, {r['size']}x{r['size']} RGB, global batch {r['batch']}, "
             f"{r['cpus']} CPUs, {r['gpus']} GPUs" + (" (quick)" if r["quick"] else ""), "",
             "| mode | processes | backend | device | threads/rank | median s/step | samples/s | step / first row |",
             "|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['mode']} | {row['processes']} | {row['backend']} | {row['device']} | "
                     f"{row['threads_per_rank']} | {row['median_step_s']} | {row['samples_per_s']} | "
                     f"{row['step_ratio_to_first']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--processes", default="1,2", help="comma-separated rank counts (default 1,2)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "ddp.json"))
    args = parser.parse_args()
    steps, warmup = (30, 15) if args.quick else (100, 20)
    processes = tuple(int(p) for p in args.processes.split(","))
    rows = ddp_step_times(processes, steps=steps, warmup=warmup, preset=args.preset, batch=args.batch,
                          threads=args.threads)
    results = {"rows": rows, "preset": args.preset, "size": 32, "batch": args.batch, "quick": args.quick,
               "cpus": os.cpu_count(), "gpus": torch.cuda.device_count(), "torch": torch.__version__,
               "python": platform.python_version(), "commit": git_commit()}
    write_report(results, args.out, table)


if __name__ == "__main__":
    main()
