"""Benchmarks: each prints a table and writes JSON under var/bench/, comparing methods in the same run."""
from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def paired_text(d: dict | None, none: str = "reference") -> str:
    """A paired comparison (learngene.protocol.paired) as '+0.012 [+0.004, +0.021]'; `none` when there is none."""
    return f"{d['mean_difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d else none


def drop_redis_keys(broker_url: str, prefix: str) -> None:
    """Delete this run's keys (those under `prefix`) from the broker, and nothing else."""
    import redis

    client = redis.Redis.from_url(broker_url)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)


def write_report(results: dict, out: str | Path, table: Callable[[dict], str]) -> None:
    """Write the JSON, then print the table and where the JSON went."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nwritten to {out}")
