"""End to end with the command line: `learngene serve` (the embedded service, as `make run` starts it) and
the `learngene` client commands as separate processes, through the flow of the README."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

TASKS = [["alpha", "beta", "gamma"], ["delta", "eps", "zeta"], ["eta", "theta", "alpha"]]
TARGET = ["p", "q", "r", "s"]
KEY = "lgk_e2e-cli-key"


@pytest.fixture
def service(tmp_path, kit):
    port = kit.free_port()
    settings = {"data_dir": tmp_path / "var", "extract_method": "gradient", "api_key": KEY}
    log = tmp_path / "service.log"
    proc = kit.spawn(["-m", "learngene_client.cli", "serve", "--port", str(port)], settings, log)
    try:
        kit.wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc, log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        kit.stop(proc)


@pytest.fixture
def learngene(service, kit, tmp_path):
    """Run `learngene ARGS...` as its own process, configured by LEARNGENE_URL and LEARNGENE_API_KEY."""
    env = kit.service_env({"url": service, "api_key": KEY})

    def run(*args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "learngene_client.cli", *map(str, args)], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=240)

    return run


def test_the_readme_flow_with_the_cli(learngene, make_task, tmp_path):
    for i, classes in enumerate(TASKS):
        (tmp_path / f"task{i + 1}.npz").write_bytes(make_task(classes, 10, seed=i))
    support, query = make_task(TARGET, 5, seed=20), make_task(TARGET, 5, seed=21)
    (tmp_path / "support.npz").write_bytes(support)
    (tmp_path / "query.npz").write_bytes(query)
    buf = io.BytesIO()
    np.savez(buf, x=np.load(io.BytesIO(query))["x"])
    (tmp_path / "images.npz").write_bytes(buf.getvalue())
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 this is no dataset")

    for i in (1, 2, 3):
        added = learngene("tasks", "add", f"task{i}.npz", "--name", f"task-{i}", "--epochs", 2, "--wait")
        assert added.returncode == 0, added.stderr
        # Not a terminal: one plain line per progress change seen (two epochs may pass between two polls).
        assert re.search(rf"^job {i} (queued|running: \w+)", added.stdout, re.M) and f"job {i} succeeded (100%)" \
            in added.stdout
        assert added.stdout.strip().splitlines()[-1].startswith(
            f"succeeded: collective default v{i}, learngene {i} (layers [")

    catalog = learngene("learngenes", "list")
    assert catalog.returncode == 0
    assert all(f"default@{v}" in catalog.stdout for v in (1, 2, 3))
    raw = json.loads(learngene("--json", "learngenes", "show", 3).stdout)
    assert raw["collective_version"] == 3 and raw["lineage"]["task_name"] == "task-3"

    made = learngene("individuals", "create", "support.npz", "--eval", "query.npz", "--epochs", 15, "--seed", 1,
                     "--wait")
    assert made.returncode == 0, made.stderr
    outcome = made.stdout.strip().splitlines()[-1]
    accuracy = re.fullmatch(r"succeeded: individual 1, eval accuracy (\d\.\d\d)", outcome)
    assert accuracy and float(accuracy.group(1)) >= 0.5, outcome  # four well separated classes
    shown = learngene("individuals", "show", 1)
    assert "p (5 shots), q (5 shots), r (5 shots), s (5 shots)" in shown.stdout

    predicted = json.loads(learngene("--json", "predict", 1, "images.npz").stdout)["predictions"]
    labels = [p["label"] for p in predicted]
    assert len(labels) == 20 and set(labels) <= set(TARGET)
    table = learngene("predict", 1, "images.npz")
    assert table.returncode == 0 and "probability" in table.stdout and table.stdout.count("\n") >= 21

    watched = learngene("jobs", "watch", 4)  # finished already: its outcome at once
    assert watched.returncode == 0 and watched.stdout.strip().splitlines()[-1] == outcome

    bad = learngene("tasks", "add", "bad.npz")
    assert bad.returncode == 1 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and bad.stderr.startswith("error: 422 Invalid dataset: ")
