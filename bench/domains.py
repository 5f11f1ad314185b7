"""Other domains through the public API: playing cards (RGB 32 px, grey 28 px) against the anchors a user has.

    python -m bench.domains            # full: 10 episodes per setting, both families (~20 min on 2 cores)
    python -m bench.domains --quick    # 3 episodes, fixed recipes, the RGB family (~4 min)

For each family the 32 cards of `BASE_RANKS` are dealt into 4 task files (8 cards each, the .npz upload format);
target episodes (5-way 5-shot and 5-way 1-shot, fixed seeds) take their classes from the 20 cards of
`NOVEL_RANKS` (no target rank is in any task, in any suit); the query is every other sample of those classes.

1. Anchors, in this process, plain PyTorch: a net of the `small` preset's final widths trained jointly on the
   four task files, then (a) prototypes and (b) a linear probe on its frozen features and (c) fine-tuning it with
   a new head; (d) a scratch net, 100 full-batch AdamW steps with augmentation and label smoothing. Their
   hyper-parameters are chosen on the task files only: the joint net's on held-out decks of tasks 1-3, the
   fine-tuning and scratch recipes on pseudo-episodes from task 4's classes with a net trained on tasks 1-3.
2. The service over real HTTP (`learngene serve`, a fresh data dir, auth off): POST the four task files to /tasks
   with default settings, then per episode POST /individuals with the support and the query as eval_file, with
   no init field (the default), init=scratch, init=learngene and init=instant; eval accuracy from the metrics.
Prints a table (mean, t-interval, paired differences of the service default against each anchor) and writes
var/bench/domains.json with every per-episode value, the choices made, and which run it was (date, commit, mode).
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import torch

from bench import git_commit
from learngene import Collective
from learngene.augment import augment
from learngene.baselines import linear_probe_accuracy, prototype_accuracy
from learngene.data import InputSpec, TaskDataset, npz_bytes, to_input
from learngene.datasets import BASE_RANKS, NOVEL_RANKS, CardSet, load_cards
from learngene.model import ConvNet, NetConfig, count_parameters
from learngene.protocol import mean_ci, sample_episode
from learngene.training import accuracy, logits_of, train

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = [(5, 5), (5, 1)]  # (ways, shots)
CARD_FAMILIES = {"cards-rgb32": lambda: load_cards(32), "cards-gray28": lambda: load_cards(28).grayscale()}
SERVICE_INITS = {"service default": None, "service scratch": "scratch", "service learngene": "learngene",
                 "service instant": "instant"}
ANCHORS = ("joint: prototypes", "joint: linear probe", "joint: fine-tune", "tuned scratch")

# -- the data -----------------------------------------------------------------------------------------------------


@dataclass
class Family:
    name: str
    cards: CardSet
    spec: InputSpec
    tasks: list[TaskDataset]  # the four task files
    task_classes: list[list[str]]
    targets: list[int]  # class ids (in `cards`) the target episodes draw from


def make_family(name: str, cards: CardSet, seed: int) -> Family:
    rng = np.random.default_rng(seed)
    base = rng.permutation(cards.classes_of(BASE_RANKS))
    ds = cards.dataset()
    tasks = [ds.subset(cards.samples_of(sorted(chunk.tolist()))) for chunk in np.array_split(base, 4)]
    spec = InputSpec(channels=cards.x.shape[3], size=cards.size)
    return Family(name, cards, spec, tasks, [t.class_names for t in tasks], cards.classes_of(NOVEL_RANKS))


def card_collective(fam: Family, seed: int, epochs: int | None = None, **options) -> tuple[Collective, list[dict]]:
    """A collective (library defaults, `options` overriding) that learned the family's task files 1-3 (task 4 stays
    unseen for base-data episodes: `card_tasks`); with each task's report."""
    c = Collective.create(fam.spec, preset=options.pop("preset", "small"), seed=seed, **options)
    return c, [c.learn_task(ds, epochs=epochs, name=f"task-{i + 1}") for i, ds in enumerate(fam.tasks[:3])]


def card_tasks(fam: Family, spec: InputSpec, ways: int, shots: int, count: int, seed: int) -> list:
    """`count` episodes from task file 4, which `card_collective` never saw: (sx, sy, qx, qy, ways) each."""
    held = fam.tasks[3]
    return [(*episode_tensors(held, spec, s_idx, q_idx, chosen), ways)
            for s_idx, q_idx, chosen in episodes(held.y, list(range(held.num_classes)), ways, shots, count, seed)]


def episodes(labels: np.ndarray, classes: list[int], ways: int, shots: int, n: int, base_seed: int) -> list:
    return [sample_episode(labels, classes, ways, shots, seed=base_seed + 100 * shots + e) for e in range(n)]


def split_by_deck(ds: TaskDataset, held_out: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a training and a held-out part: `held_out` samples of every class go to the second."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(ds.num_classes):
        idx = rng.permutation(np.flatnonzero(ds.y == c))
        test.append(idx[:held_out])
        train.append(idx[held_out:])
    return np.concatenate(train), np.concatenate(test)


def concat(tasks: list[TaskDataset]) -> TaskDataset:
    """The task files as one labelled set (class ids follow the files' order)."""
    names, xs, ys = [], [], []
    for t in tasks:
        ys.append(t.y + len(names))
        names += t.class_names
        xs.append(t.x)
    return TaskDataset(np.concatenate(xs), np.concatenate(ys), names)


# -- the anchors: plain PyTorch, in this process ------------------------------------------------------------------


def train_steps(net: ConvNet, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float, seed: int,
                batch: int | None = None, smoothing: float = 0.1, weight_decay: float = 5e-4,
                freeze_bn: bool = False, stop: int | None = None,
                checkpoint: Callable[[int, ConvNet], None] | None = None, every: int = 50) -> ConvNet:
    """The library's one loop (AdamW, cosine over `steps`) with augmentation and label smoothing; full-batch when
    `batch` is None. `stop` ends it early (same schedule); `checkpoint(step, net)` sees the net in eval mode every
    `every` steps."""
    gen = torch.Generator().manual_seed(seed)
    # Frozen BatchNorm keeps the trained net's statistics: a 5-image batch says little about them.
    frozen = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)] if freeze_bn else []

    def draw(step: int):
        idx = torch.randint(0, len(x), (batch,), generator=gen) if batch and batch < len(x) else slice(None)
        return augment(x[idx], gen), y[idx]

    def on_epoch(epoch: int, stats: dict) -> bool:
        if checkpoint is not None and stats["steps"] % every == 0:
            checkpoint(stats["steps"], net.eval())
            net.train()
            for m in frozen:
                m.eval()
        return stop is not None and stats["steps"] >= stop

    period = math.gcd(every, stop) if checkpoint and stop else every if checkpoint else (stop or steps)
    train(net, draw, steps=steps, lr=lr, weight_decay=weight_decay, label_smoothing=smoothing, frozen_bn=frozen,
          steps_per_epoch=period, on_epoch=on_epoch, device=torch.device("cpu"))
    return net.eval()


def joint_net(spec: InputSpec, ds: TaskDataset, recipe: dict, seed: int,
              checkpoint: Callable[[int, ConvNet], None] | None = None) -> ConvNet:
    """The `small` preset at its final widths, trained on `ds` in batches of 64 (`recipe`: lr, steps, stop)."""
    torch.manual_seed(seed)
    net = ConvNet(NetConfig.preset("small", spec.channels, ds.num_classes, final=True))
    return train_steps(net, to_input(ds.x, spec), torch.from_numpy(ds.y), recipe["steps"], recipe["lr"], seed,
                       batch=64, stop=recipe.get("stop"), checkpoint=checkpoint)


def fine_tune(joint: ConvNet, sx, sy, ways: int, recipe: dict, seed: int) -> ConvNet:
    net = copy.deepcopy(joint)
    torch.manual_seed(seed)
    net.classifier = torch.nn.Linear(net.feature_dim, ways)
    net.config.num_classes = ways
    return train_steps(net, sx, sy, recipe["steps"], recipe["lr"], seed, freeze_bn=recipe["freeze_bn"])


def scratch(spec: InputSpec, sx, sy, ways: int, recipe: dict, seed: int) -> ConvNet:
    torch.manual_seed(seed)
    cfg = NetConfig.preset("small", spec.channels, ways)
    cfg.pool_after = list(recipe["pool_after"])
    return train_steps(ConvNet(cfg), sx, sy, recipe["steps"], recipe["lr"], seed)


def episode_tensors(ds: TaskDataset, spec: InputSpec, s_idx, q_idx, chosen):
    remap = {c: i for i, c in enumerate(chosen)}
    sy = torch.tensor([remap[int(v)] for v in ds.y[s_idx]])
    qy = torch.tensor([remap[int(v)] for v in ds.y[q_idx]])
    return to_input(ds.x[s_idx], spec), sy, to_input(ds.x[q_idx], spec), qy


def anchor_accuracies(joint: ConvNet, spec: InputSpec, ep: tuple, recipes: dict, seed: int) -> dict:
    """method -> (accuracy, seconds) for the four anchors on one episode (tensors from `episode_tensors`)."""
    sx, sy, qx, qy = ep
    ways = int(sy.max()) + 1
    out = {}
    for name, run in [
        ("joint: prototypes", lambda: prototype_accuracy(joint, sx, sy, qx, qy)),
        ("joint: linear probe", lambda: linear_probe_accuracy(joint, sx, sy, qx, qy)),
        ("joint: fine-tune", lambda: accuracy(logits_of(fine_tune(joint, sx, sy, ways, recipes["fine-tune"], seed),
                                                        qx, torch.device("cpu")), qy)),
        ("tuned scratch", lambda: accuracy(logits_of(scratch(spec, sx, sy, ways, recipes["scratch"], seed),
                                                     qx, torch.device("cpu")), qy)),
    ]:
        t0 = time.perf_counter()
        out[name] = (run(), time.perf_counter() - t0)
    return out


def choose(fam: Family, grids: dict, n_val: int, seed: int, log) -> tuple[dict, dict]:
    """Hyper-parameters from the task files only; returns (chosen, every score measured).

    The joint net's learning rate and stopping step: trained on tasks 1-3 less 3 decks of every class, scored on
    those decks. The fine-tuning and scratch recipes: pseudo-episodes from task 4's classes, which that net never
    saw, one choice per setting. A grid of one entry is taken as it is (the quick mode).
    """
    scores: dict = {"joint": {}, "fine-tune": {}, "scratch": {}}
    needs_net = len(grids["fine_tune"]) > 1
    if len(grids["joint_lr"]) == 1 and not needs_net:
        chosen = {"joint": {"lr": grids["joint_lr"][0], "steps": grids["joint_steps"]}}
    else:
        first3 = concat(fam.tasks[:3])
        tr, ho = split_by_deck(first3, held_out=3, seed=seed)
        train, held = first3.subset(tr), first3.subset(ho)
        held_x = to_input(held.x, fam.spec)
        best: tuple = (-1.0, None, None)
        for lr in grids["joint_lr"]:
            def score(step: int, net: ConvNet, lr=lr) -> None:
                nonlocal best
                acc = accuracy(logits_of(net, held_x, torch.device("cpu")), held.y)
                scores["joint"][f"lr={lr},step={step}"] = acc
                if acc > best[0]:
                    best = (acc, {"lr": lr, "steps": grids["joint_steps"], "stop": step}, copy.deepcopy(net))

            joint_net(fam.spec, train, {"lr": lr, "steps": grids["joint_steps"]}, seed, checkpoint=score)
        chosen = {"joint": best[1]}
        joint3 = best[2]
        log(f"  {fam.name} joint: {best[1]} (held-out {best[0]:.3f})")
    t4 = fam.tasks[3]
    for ways, shots in SETTINGS:
        setting = f"{ways}-way {shots}-shot"
        eps = None
        for kind, grid in (("fine-tune", grids["fine_tune"]), ("scratch", grids["scratch"])):
            if len(grid) == 1:
                chosen.setdefault(kind, {})[setting] = grid[0]
                continue
            eps = eps or [episode_tensors(t4, fam.spec, *e) for e in
                          episodes(t4.y, list(range(t4.num_classes)), ways, shots, n_val, base_seed=seed + 7000)]
            best_recipe: tuple = (-1.0, None)
            for recipe in grid:
                accs = []
                for e, (sx, sy, qx, qy) in enumerate(eps):
                    net = (fine_tune(joint3, sx, sy, ways, recipe, seed + e) if kind == "fine-tune"
                           else scratch(fam.spec, sx, sy, ways, recipe, seed + e))
                    accs.append(accuracy(logits_of(net, qx, torch.device("cpu")), qy))
                key = ",".join(f"{k}={v}" for k, v in recipe.items())
                scores[kind].setdefault(setting, {})[key] = float(np.mean(accs))
                if np.mean(accs) > best_recipe[0]:
                    best_recipe = (float(np.mean(accs)), recipe)
            chosen.setdefault(kind, {})[setting] = best_recipe[1]
            log(f"  {fam.name} {kind} {setting}: {best_recipe[1]} ({best_recipe[0]:.3f})")
    return chosen, scores


# -- the service, over HTTP ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`learngene serve` from this checkout's environment on a free port, a fresh data dir, auth off."""

    def __init__(self, log_path: Path):
        self.data_dir = Path(tempfile.mkdtemp(prefix="lg-domains-"))
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNGENE_")}
        env.update(LEARNGENE_DATA_DIR=str(self.data_dir), LEARNGENE_PORT=str(self.port), LEARNGENE_AUTH="off",
                   PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        exe = Path(sys.executable).parent / "learngene"
        cmd = [str(exe), "serve"] if exe.exists() else [sys.executable, "-m", "service", "run"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.log_path = log_path
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited:\n{log_path.read_text()[-2000:]}")
            try:
                if self.client.get("/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.close()
        raise RuntimeError("the service did not become ready")

    def wait(self, job_id: int, timeout: float = 1800) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(f"/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id} did not finish")

    def close(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the service stops its worker, then itself
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def job_seconds(job: dict) -> float | None:
    if job.get("started_at") and job.get("finished_at"):
        start, end = (dt.datetime.fromisoformat(job[k].replace("Z", "+00:00")) for k in ("started_at", "finished_at"))
        return (end - start).total_seconds()
    return None


def grow_service(svc: Service, fam: Family, log) -> dict:
    jobs = []
    for i, task in enumerate(fam.tasks):
        r = svc.client.post("/tasks", files={"file": (f"{fam.name}-task{i + 1}.npz", npz_bytes(task))},
                            data={"name": f"{fam.name}-task-{i + 1}"})
        r.raise_for_status()
        jobs.append(r.json()["id"])
    done = [svc.wait(j) for j in jobs]
    failed = [d for d in done if d["status"] != "succeeded"]
    if failed:
        raise RuntimeError(f"task jobs failed: {failed}")
    last = done[-1]["result"]
    gene = svc.client.get(f"/learngenes/{last['learngene_id']}").json()
    tasks = [svc.client.get(f"/tasks/{d['result']['task_id']}").json() for d in done]
    log(f"  {fam.name}: collective v{last['collective_version']}, learngene {gene['layers']} "
        f"({gene['method']}), task accuracies {[t['accuracy'] for t in tasks]}")
    rows = [t["accuracy_row"] for t in tasks]
    return {"collective_version": last["collective_version"], "learngene_id": last["learngene_id"],
            "learngene_layers": gene["layers"], "learngene_method": gene["method"],
            "learngene_parameters": gene["parameters"], "accuracy_rows": rows, **continual_summary(rows),
            "task_seconds": [job_seconds(d) for d in done]}


def continual_summary(rows: list[list[float | None]]) -> dict:
    """Average accuracy over all tasks after the last one, and forgetting: the mean over the earlier tasks of
    (best accuracy they ever had - accuracy after the last task)."""
    final = [a for a in rows[-1] if a is not None]
    drops = [max(r[t] for r in rows[t:] if t < len(r) and r[t] is not None) - rows[-1][t]
             for t in range(len(rows) - 1) if rows[-1][t] is not None]
    return {"average_accuracy": float(np.mean(final)) if final else None,
            "forgetting": float(np.mean(drops)) if drops else None}


def service_accuracies(svc: Service, support: bytes, query: bytes, unavailable: dict) -> dict:
    """method -> (accuracy, seconds, what the service made) for one episode; inits it refuses go to `unavailable`."""
    posted = {}
    for method, init in SERVICE_INITS.items():
        if method in unavailable:
            continue
        r = svc.client.post("/individuals", files={"file": ("support.npz", support), "eval_file": ("query.npz", query)},
                            data={} if init is None else {"init": init})
        if r.status_code == 422:
            unavailable[method] = r.json().get("detail", r.text)[:300]
            continue
        r.raise_for_status()
        posted[method] = r.json()["id"]
    out = {}
    for method, job_id in posted.items():
        job = svc.wait(job_id)
        if job["status"] != "succeeded":
            raise RuntimeError(f"{method}: job {job_id} {job['status']}: {job.get('error')}")
        ind = svc.client.get(f"/individuals/{job['result']['individual_id']}").json()
        made = {"init": ind["init"], "parameters": ind["parameters"],
                **{k: v for k, v in ind["metrics"].items() if k not in ("history", "eval_accuracy")}}
        out[method] = (ind["metrics"]["eval_accuracy"], job_seconds(job), made)
    return out


# -- the run ------------------------------------------------------------------------------------------------------


def run_family(fam: Family, args, log) -> dict:
    t0 = time.perf_counter()
    chosen, scores = choose(fam, args.grids, args.val_episodes, args.seed, log)
    all_tasks = concat(fam.tasks)
    joint = joint_net(fam.spec, all_tasks, chosen["joint"], args.seed)
    selection_seconds = time.perf_counter() - t0
    ds = fam.cards.dataset()
    results: dict = {}
    svc = Service(Path(args.out) / f"service-{fam.name}.log")
    unavailable: dict = {}
    try:
        service_info = grow_service(svc, fam, log)
        for ways, shots in SETTINGS:
            setting = f"{ways}-way {shots}-shot"
            recipes = {k: chosen[k][setting] for k in ("fine-tune", "scratch")}
            for e, (s_idx, q_idx, chosen_classes) in enumerate(
                    episodes(ds.y, fam.targets, ways, shots, args.episodes, base_seed=args.seed + 1000)):
                seed = args.seed + 1000 + 100 * shots + e
                anchors = anchor_accuracies(joint, fam.spec, episode_tensors(ds, fam.spec, s_idx, q_idx,
                                                                             chosen_classes), recipes, seed)
                support = npz_bytes(ds.subset(s_idx))
                query = npz_bytes(ds.subset(q_idx))
                served = service_accuracies(svc, support, query, unavailable)
                for method, (acc, secs, *made) in {**anchors, **served}.items():
                    row = results.setdefault(setting, {}).setdefault(method, {"accuracies": [], "seconds": [],
                                                                              "made": []})
                    row["accuracies"].append(acc)
                    row["seconds"].append(secs)
                    if made:
                        row["made"].append(made[0])
                log(f"  {fam.name} {setting} episode {e + 1}: " +
                    ", ".join(f"{m} {v[0]:.3f}" for m, v in {**anchors, **served}.items()))
    finally:
        svc.close()
    rows = []
    for setting, methods in results.items():
        default = methods.get("service default")
        for method, r in methods.items():
            mean, ci = mean_ci(r["accuracies"])
            secs = [s for s in r["seconds"] if s is not None]
            row = {"family": fam.name, "setting": setting, "method": method, "accuracy_mean": mean,
                   "accuracy_ci95": ci, "episodes": len(r["accuracies"]), "accuracies": r["accuracies"],
                   "seconds_median": float(np.median(secs)) if secs else None, "seconds": r["seconds"]}
            if r["made"]:
                row["made"] = r["made"]
            if default is not None and method != "service default":
                diff = np.array(default["accuracies"]) - np.array(r["accuracies"])
                d_mean, d_ci = mean_ci(diff.tolist())
                row["default_minus_this"] = {"mean": d_mean, "ci95": d_ci, "per_episode": diff.tolist()}
            rows.append(row)
    return {"family": fam.name, "spec": fam.spec.to_dict(), "classes": fam.cards.num_classes,
            "samples": len(fam.cards), "decks": sorted(set(fam.cards.decks)), "decks_left_out": fam.cards.dropped,
            "task_classes": fam.task_classes, "target_classes": [fam.cards.class_names[c] for c in fam.targets],
            "chosen": chosen, "selection_scores": scores, "selection_seconds": selection_seconds,
            "joint_parameters": count_parameters(joint), "service": service_info,
            "not_available": unavailable, "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="var/bench")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--families", help="comma-separated: cards-rgb32, cards-gray28 (default: both; quick: rgb)")
    args = p.parse_args(argv)
    args.mode = "quick" if args.quick else "full"
    # Tuning grids. The quick mode takes one recipe of each (no choice) and the RGB family only.
    scratch_grid = [{"steps": 100, "lr": lr, "pool_after": pool}
                    for lr in (1e-3, 3e-3) for pool in ([0, 1, 3, 5], [1, 3])]
    tune_grid = [{"steps": 100, "lr": lr, "freeze_bn": fb} for lr, fb in
                 ((1e-3, True), (1e-3, False), (3e-4, True), (3e-3, True))]
    if args.quick:
        args.episodes, args.val_episodes = 3, 0
        args.grids = {"joint_steps": 150, "joint_lr": [2e-3], "fine_tune": tune_grid[:1], "scratch": scratch_grid[3:]}
        args.families = args.families or "cards-rgb32"
    else:
        args.episodes, args.val_episodes = 10, 2
        args.grids = {"joint_steps": 300, "joint_lr": [1e-3, 3e-3], "fine_tune": tune_grid, "scratch": scratch_grid}
        args.families = args.families or "cards-rgb32,cards-gray28"
    torch.set_num_threads(int(os.environ.get("LEARNGENE_TORCH_THREADS", "1")) or torch.get_num_threads())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.0f}s] {msg}", flush=True)

    report = {"mode": args.mode, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "git_commit": git_commit(), "seed": args.seed, "torch_threads": torch.get_num_threads(),
              "episodes": args.episodes, "validation_episodes": args.val_episodes, "grids": args.grids,
              "families": []}
    for name in args.families.split(","):
        log(f"{name}: start")
        fam = make_family(name, CARD_FAMILIES[name](), args.seed)
        report["families"].append(run_family(fam, args, log))
    report["seconds_total"] = time.perf_counter() - t_start
    (out / "domains.json").write_text(json.dumps(report, indent=2))
    print(table(report))
    return report


def table(report: dict) -> str:
    lines = [f"\nOther domains ({report['mode']}, {report['date']}, {report['git_commit'][:12]}): mean accuracy "
             f"± 95% t-interval over {report['episodes']} episodes; paired difference service default − method\n",
             "| family | setting | method | accuracy | 95% CI | default − this (paired 95%) | s (median) |",
             "|---|---|---|---|---|---|---|"]
    for fam in report["families"]:
        for r in fam["rows"]:
            d = r.get("default_minus_this")
            diff = f"{d['mean']:+.3f} ± {d['ci95']:.3f}" if d else "-"
            secs = f"{r['seconds_median']:.1f}" if r["seconds_median"] is not None else "-"
            lines.append(f"| {fam['family']} | {r['setting']} | {r['method']} | {r['accuracy_mean']:.3f} | "
                         f"±{r['accuracy_ci95']:.3f} | {diff} | {secs} |")
        for method, why in fam["not_available"].items():
            lines.append(f"| {fam['family']} | all | {method} | not available | | | |")
    for fam in report["families"]:
        svc = fam["service"]
        how = "fixed (quick mode)" if report["mode"] == "quick" else "chosen on the task files"
        lines.append(f"\n{fam['family']}: anchor recipes {how}: {json.dumps(fam['chosen'])}; the service's "
                     f"collective: average accuracy {svc['average_accuracy']:.3f}, forgetting {svc['forgetting']:.3f}, "
                     f"learngene {svc['learngene_layers']} ({svc['learngene_method']})")
    lines.append(f"\nTotal {report['seconds_total']:.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
