"""Data-parallel growth (learngene/distributed.py) with real gloo process groups: 2 CPU processes, spawned.

The deterministic core first: on the same global batches, two ranks record the gradient statistics one
process records (BatchNorm over the global batch, unequal shards weighted). Then a small collective grown by
2 processes chooses the learngene 1 process chooses, at the same accuracy within noise.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from learngene import Cancelled, Collective, InputSpec, Learngene
from learngene.distributed import Parallel, ddp_processes, learn_task_parallel, run_ranks
from learngene.gradstats import GradientRecorder, stability_scores
from learngene.model import ConvNet, NetConfig
from learngene.training import train
from tests.unit.conftest import make_task

ROOT = Path(__file__).resolve().parents[2]
GLOBAL_BATCH = 11  # odd: the two shards hold 6 and 5 rows, so the loss weighting is exercised too
STEPS = 8


@pytest.fixture(autouse=True)
def gloo_ranks_from_the_repository(monkeypatch):
    monkeypatch.setenv("LEARNGENE_DEVICE", "cpu")  # gloo on the CPU, also on a machine with GPUs (ranks inherit it)
    monkeypatch.chdir(ROOT)  # ranks import this module by name (`python -m` puts the working folder first)


def _train_fixed(parallel: Parallel | None) -> dict:
    """A tiny ConvNet (with BatchNorm) trained on fixed global batches, recording gradient statistics."""
    torch.manual_seed(0)
    net = ConvNet(NetConfig.preset("tiny", 1, num_classes=5))
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(GLOBAL_BATCH, 1, 16, 16, generator=g), torch.randint(0, 5, (GLOBAL_BATCH,), generator=g))
               for _ in range(STEPS)]
    rec = GradientRecorder(tau=1e-3)
    history = train(net, lambda s: batches[s], steps=STEPS, lr=1e-2, steps_per_epoch=4,
                    after_backward=lambda: rec.record(net.conv_layers()), parallel=parallel,
                    device=torch.device("cpu"))
    rec.finish_task(reduce=parallel.mean if parallel else None)
    return {"stats": rec.history, "history": history,
            "state": {k: v.tolist() for k, v in net.state_dict().items()}}


def fixed_batches_rank(parallel: Parallel, workdir: Path) -> None:
    """Rank entry: every rank writes what it recorded."""
    (workdir / f"rank{parallel.rank}.json").write_text(json.dumps(_train_fixed(parallel)))


def test_reduced_gradient_statistics_equal_one_process(tmp_path):
    one = _train_fixed(None)
    run_ranks("tests.unit.test_distributed:fixed_batches_rank", 2, tmp_path, timeout_s=120)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["stats"] == ranks[1]["stats"]  # one table on every rank, exactly
    for s in ("share", "relative"):
        # float32 sums in another order (shards, all-reduce): differences of order 1e-7; a share changes
        # by 1/72 per gradient entry crossing tau, which such differences do not cause here.
        np.testing.assert_allclose(ranks[0]["stats"][s], one["stats"][s], rtol=1e-5, atol=1e-6)
    assert len(ranks[0]["history"]) == len(one["history"]) == 2
    for a, b in zip(ranks[0]["history"], one["history"]):  # epoch stats are those of the global batches
        assert a["accuracy"] == pytest.approx(b["accuracy"]) and a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    for key, value in one["state"].items():  # weights and BatchNorm running statistics of the global batch
        np.testing.assert_allclose(ranks[0]["state"][key], value, rtol=1e-4, atol=1e-5, err_msg=key)
        assert ranks[0]["state"][key] == ranks[1]["state"][key], key


def _grow(processes: int) -> tuple[Collective, list[dict], list[dict]]:
    # patience=3: tasks stop early (converged by held-out accuracy, on both sides alike), which keeps the run
    # short and the float drift between one and two processes at the ~300 steps measured below.
    c = Collective.create(InputSpec(1, 16), preset="tiny", seed=0, memory_per_class=4, heldout_per_class=2,
                          patience=3)
    reports, progress = [], []
    for t in range(3):
        ds = make_task([f"t{t}c{i}" for i in range(4)] + (["shared"] if t else []), per_class=10, seed=t)
        c, report = learn_task_parallel(c, ds, processes, progress=progress.append, timeout_s=120)
        reports.append(report)
    return c, reports, progress


@pytest.fixture(scope="module")
def grown_both():
    torch.manual_seed(123)  # the global generator (new head rows) starts alike for both
    one = _grow(1)
    torch.manual_seed(123)
    two = _grow(2)
    return one, two


def test_two_processes_choose_the_learngene_one_process_chooses(grown_both):
    (c1, r1, _), (c2, r2, _) = grown_both
    for k in (1, 2):
        assert Learngene.extract(c2, method="gradient", k=k).layers == Learngene.extract(c1, method="gradient",
                                                                                          k=k).layers
    # The statistics drift apart as float rounding (another summation order) compounds over ~300 AdamW steps
    # (the scores here moved by up to 0.07 of their 1.1-2.0), yet rank the layers alike: every block length
    # chooses alike.
    s1, s2 = stability_scores(c1.recorder.table("share")), stability_scores(c2.recorder.table("share"))
    assert np.argsort(s2).tolist() == np.argsort(s1).tolist(), (s1, s2)
    # Accuracy within noise: each task holds out 8-10 samples, so one flipped prediction moves a task's
    # accuracy by 0.1 and the average of three by ~0.03; 0.1 allows three such flips.
    a1, a2 = c1.info()["average_accuracy"], c2.info()["average_accuracy"]
    assert a1 > 0.5 and abs(a2 - a1) <= 0.1, (a1, a2)
    assert c2.info()["label_space"] == c1.info()["label_space"] and c2.net.config.widths == c1.net.config.widths


def test_rank_zero_reports_progress_to_the_caller(grown_both):
    (_, r1, p1), (_, r2, p2) = grown_both
    assert [(p["epoch"], p["loss"]) for p in p2] == [(h["epoch"], h["loss"]) for r in r2 for h in r["history"]]
    assert [r["new_classes"] for r in r2] == [r["new_classes"] for r in r1]


def test_one_process_is_learn_task_itself(monkeypatch):
    def no_ranks(*a, **k):
        raise AssertionError("one process must not start ranks")

    monkeypatch.setattr(subprocess, "Popen", no_ranks)
    ds = make_task(["a", "b", "c"], per_class=8)
    twin = Collective.create(InputSpec(1, 16), preset="tiny", seed=0)
    c = Collective.create(InputSpec(1, 16), preset="tiny", seed=0)
    torch.manual_seed(5)
    expected = twin.learn_task(ds, epochs=3)
    torch.manual_seed(5)
    grown, report = learn_task_parallel(c, ds, 1, epochs=3)
    assert grown is c and report["history"] == expected["history"]
    for (k, v), w in zip(c.net.state_dict().items(), twin.net.state_dict().values()):
        assert torch.equal(v, w), k  # bit for bit


def test_the_setting():
    assert ddp_processes("1") == 1 and ddp_processes(" 2 ") == 2
    assert ddp_processes("auto") == 1  # no GPU in use (LEARNGENE_DEVICE=cpu here)
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError):
            ddp_processes(bad)


def fail_on_rank_one(parallel: Parallel, workdir: Path) -> None:
    """Rank entry: rank 1 fails at once while rank 0 is busy for an hour (a rank waiting in a collective
    would also notice the closed connection itself)."""
    torch.distributed.barrier()  # both have joined: from here rank 0 talks to nobody
    if parallel.rank == 1:
        raise ValueError("rank one refuses")
    time.sleep(3600)


def test_a_failing_rank_ends_the_others(tmp_path, monkeypatch):
    started: list[subprocess.Popen] = []
    popen = subprocess.Popen

    def remember(*a, **k):
        started.append(popen(*a, **k))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", remember)
    with pytest.raises(ValueError, match="rank one refuses"):
        run_ranks("tests.unit.test_distributed:fail_on_rank_one", 2, tmp_path, timeout_s=3600)
    assert started[1].returncode == 1
    assert started[0].returncode == -9  # killed by the caller, not left waiting out its hour


def test_cancel_stops_every_rank():
    ds = make_task([f"c{i}" for i in range(4)], per_class=10)
    c = Collective.create(InputSpec(1, 16), preset="tiny", seed=0)
    progress: list[dict] = []
    with pytest.raises(Cancelled):
        learn_task_parallel(c, ds, 2, epochs=50, progress=progress.append, should_stop=lambda: bool(progress),
                            timeout_s=120)
    assert 1 <= len(progress) < 50 and c.tasks_seen == 0  # stopped early; the caller's collective untouched


def until_stopped(parallel: Parallel, workdir: Path) -> None:
    """Rank entry: note this rank's pid, then step (agreeing on should_stop, as training does) until told."""
    (workdir / f"pid{parallel.rank}").write_text(str(os.getpid()))
    while not parallel.should_stop():
        time.sleep(0.05)


def _running(pid: int) -> bool:
    try:  # a zombie whose new parent does not reap it has ended too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_ranks_stop_when_their_caller_dies(tmp_path):
    script = ("import sys; from pathlib import Path; from learngene.distributed import run_ranks; "
              "run_ranks('tests.unit.test_distributed:until_stopped', 2, Path(sys.argv[1]), timeout_s=3600)")
    caller = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT)
    try:
        pids = []
        for _ in range(600):  # the ranks start (importing torch) and join
            if all((tmp_path / f"pid{r}").exists() for r in range(2)) and caller.poll() is None:
                pids = [int((tmp_path / f"pid{r}").read_text()) for r in range(2)]
                break
            time.sleep(0.1)
        assert pids, "the ranks did not start"
    finally:
        caller.kill()  # SIGKILL: no clean-up in the caller; the ranks must notice by themselves
        caller.wait()
    for _ in range(600):
        if not any(_running(p) for p in pids):
            break
        time.sleep(0.1)
    left = [p for p in pids if _running(p)]
    for p in left:  # the test failed: do not leave them waiting out their hour
        os.kill(p, 9)
    assert not left  # stopped at their next step, not after the hour's timeout
