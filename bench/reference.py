"""DESIGN section 5's reference check, rebuilt on the glyph targets' own episodes (run D1).

    python -m bench.reference                                   # 8 convs, 10 minutes on every base class
    python -m bench.reference --pair docs/runs/b8/fewshot.json  # + paired against a fewshot run's episodes
    python -m bench.reference --minutes 0.5 --episodes 2        # a smoke run

Issue 9's glyph targets (0.79 at 20-way 1-shot, 0.97 at 20-way 5-shot) come from DESIGN's reference figures: a
small 8-conv CNN pretrained for 10 minutes on every base class at once (94.5% base validation accuracy), then
at within-script 20-way 1-shot prototypes on its features 0.79 and its first 5 blocks inherited 0.755; at 20-way
5-shot its first 5 blocks inherited 0.969, the whole net fine-tuned 0.969, prototypes 0.905. This script trains
such a net on this machine for the same wall time and scores it on the SAME target episodes as bench/fewshot.py
(`target_episode`: seeded by setting and index alone), so every row pairs with a fewshot run's learngene
individual episode by episode (`--pair`). It chooses nothing: it asks whether the targets' own reference reaches
them on these episodes. Trained rows use the individual's recipe (`make_net`, the library's defaults, no teacher).
Prints a table and writes var/bench/reference/reference.json (every episode).
"""
from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from bench import git_commit, paired_text, write_report
from bench.fewshot import DEFAULT, target_episode, target_seed
from learngene import InputSpec, Learngene, TrainOptions, to_input
from learngene.baselines import linear_probe_accuracy, prototype_accuracy, train_joint
from learngene.datasets import BASE_SCRIPTS, load_glyphs
from learngene.device import select_device
from learngene.individual import make_net
from learngene.model import NetConfig, count_parameters
from learngene.protocol import mean_ci, paired
from learngene.training import accuracy, logits_of

# DESIGN names "a small 8-conv CNN" without widths; these double every two convs, pooling after each pair
# (32 → 4 px), like the `small` preset's trunk at its final widths, two convs deeper.
WIDTHS = [32, 32, 64, 64, 128, 128, 128, 128]
POOL_AFTER = [1, 3, 5]
INHERITED = 5  # DESIGN's best learngene-like row: the first 5 blocks under fresh upper blocks


def base_data(glyphs, spec: InputSpec, seed: int) -> tuple[torch.Tensor, ...]:
    """Every base-script image, one in ten held out per class for the validation accuracy DESIGN quotes."""
    classes = glyphs.classes_of(BASE_SCRIPTS)
    index = {c: i for i, c in enumerate(classes)}
    idx = glyphs.samples_of(classes)
    y = np.array([index[int(c)] for c in glyphs.labels[idx]])
    held = np.zeros(len(idx), bool)
    rng = np.random.default_rng(seed)
    for c in range(len(classes)):
        members = np.flatnonzero(y == c)
        held[rng.choice(members, max(1, len(members) // 10), replace=False)] = True
    x, y, held = to_input(glyphs.x[idx], spec), torch.from_numpy(y), torch.from_numpy(held)
    return x[~held], y[~held], x[held], y[held]  # training x, y; validation x, y


def pretrain(x, y, num_classes: int, minutes: float, seed: int, steps: int | None = None
             ) -> tuple[torch.nn.Module, dict]:
    """Joint training for `steps` batches, or about `minutes` of wall time: steps from the speed of a timed run
    of 200 (run D1's first try timed 20, whose start-up cost cut its 10 minutes to 5.4)."""
    cfg = NetConfig(1, list(WIDTHS), list(POOL_AFTER), [], num_classes)
    if steps is None:
        t0 = time.perf_counter()
        train_joint(x, y, cfg, 200, seed=seed)
        steps = max(200, int(minutes * 60 / ((time.perf_counter() - t0) / 200)))
    t0 = time.perf_counter()
    net = train_joint(x, y, cfg, steps, seed=seed)
    return net, {"steps": steps, "seconds": time.perf_counter() - t0, "parameters": count_parameters(net),
                 "widths": WIDTHS, "pool_after": POOL_AFTER}


def evaluate(glyphs, net, spec: InputSpec, settings, episodes: int) -> dict[str, dict[str, list[float]]]:
    device = select_device()
    ref = Learngene.whole(SimpleNamespace(net=net, spec=spec, tasks_seen=1))
    out: dict[str, dict[str, list[float]]] = {}
    for ways, shots in settings:
        rows: dict[str, list[float]] = {}
        for e in range(episodes):
            sx, sy, qx, qy = target_episode(glyphs, spec, ways, shots, e)
            o = TrainOptions(seed=target_seed(ways, shots, e)).resolved()
            rows.setdefault("prototypes", []).append(prototype_accuracy(net, sx, sy, qx, qy))
            rows.setdefault("linear probe", []).append(linear_probe_accuracy(net, sx, sy, qx, qy))
            for name, layers in [(f"first {INHERITED} blocks inherited", list(range(INHERITED))),
                                 ("fine-tune whole", list(range(len(WIDTHS))))]:
                trained = make_net("learngene", ref, None, sx, sy, ways, o, layers, device)[0]
                rows.setdefault(name, []).append(accuracy(logits_of(trained, qx, device), qy))
            print(f"  {ways}-way {shots}-shot episode {e + 1}: "
                  + ", ".join(f"{k} {v[-1]:.3f}" for k, v in rows.items()), flush=True)
        out[f"{ways}-way {shots}-shot"] = rows
    return out


def pairs(rows: dict, pair_path: str | None, settings) -> dict:
    """learngene individual (of the fewshot run at `pair_path`) − each row, per setting, episode by episode."""
    if not pair_path:
        return {}
    run = json.loads(Path(pair_path).read_text())
    out = {}
    for ways, shots in settings:
        key = f"{ways}-way {shots}-shot"
        episodes = len(next(iter(rows[key].values())))
        ours = next(r["accuracies"] for r in run["rows"]
                    if r["method"] == DEFAULT and r["ways"] == ways and r["shots"] == shots)[:episodes]
        out[key] = {"learngene": ours, "minus": {m: paired(ours, v) for m, v in rows[key].items()}}
    return out


def table(r: dict) -> str:
    lines = [f"Reference check (run {r['run']['date']}, {r['run']['commit'][:12]}): {len(WIDTHS)} convs, "
             f"{r['pretrain']['steps']} steps in {r['pretrain']['seconds']:.0f} s, base validation accuracy "
             f"{r['base_validation_accuracy']:.3f} over {r['base_classes']} classes", "",
             "| setting | method | accuracy | 95% CI | DESIGN's figure | learngene individual − this (paired) |",
             "|---|---|---|---|---|---|"]
    design = {("20-way 1-shot", "prototypes"): 0.79, ("20-way 1-shot", "first 5 blocks inherited"): 0.755,
              ("20-way 1-shot", "fine-tune whole"): 0.75, ("20-way 5-shot", "prototypes"): 0.905,
              ("20-way 5-shot", "linear probe"): 0.894, ("20-way 5-shot", "first 5 blocks inherited"): 0.969,
              ("20-way 5-shot", "fine-tune whole"): 0.969}
    for setting, rows in r["rows"].items():
        for method, acc in rows.items():
            m, h = mean_ci(acc)
            d = r["paired"].get(setting, {}).get("minus", {}).get(method)
            ref = design.get((setting, method))
            lines.append(f"| {setting} | {method} | {m:.3f} | ±{h:.3f} | {ref if ref else '–'} | "
                         f"{paired_text(d, '–')} |")
        if setting in r["paired"]:
            m, h = mean_ci(r["paired"][setting]["learngene"])
            lines.append(f"| {setting} | learngene individual (paired run) | {m:.3f} | ±{h:.3f} | – | – |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="wall time of the joint pretraining (DESIGN: 10)")
    p.add_argument("--steps", type=int, help="joint training batches (instead of --minutes)")
    p.add_argument("--episodes", type=int, default=20, help="target tasks per setting (bench.fewshot's 20)")
    p.add_argument("--settings", default="20x1,20x5")
    p.add_argument("--pair", help="a bench.fewshot JSON whose learngene individual to pair with")
    p.add_argument("--glyphs", default="var/data/glyphs.npz")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="var/bench/reference/reference.json")
    args = p.parse_args()
    settings = [tuple(int(v) for v in s.split("x")) for s in args.settings.split(",")]
    spec = InputSpec(channels=1, size=32)
    t0 = time.perf_counter()
    glyphs = load_glyphs(cache_path=args.glyphs)
    x, y, vx, vy = base_data(glyphs, spec, args.seed)
    num_classes = int(y.max()) + 1
    print(f"base: {num_classes} classes, {len(x)} training and {len(vx)} validation images", flush=True)
    net, info = pretrain(x, y, num_classes, args.minutes, args.seed, args.steps)
    val = accuracy(logits_of(net, vx, select_device()), vy)
    print(f"pretrained: {info['steps']} steps, {info['seconds']:.0f} s, validation accuracy {val:.3f}", flush=True)
    rows = evaluate(glyphs, net, spec, settings, args.episodes)
    results = {"run": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "commit": git_commit(), "torch_threads": torch.get_num_threads(),
                       "device": str(select_device()), "args": vars(args)},
               "base_classes": num_classes, "base_validation_accuracy": val, "pretrain": info,
               "rows": rows, "paired": pairs(rows, args.pair, settings), "seconds_total": time.perf_counter() - t0}
    write_report(results, args.out, table)


if __name__ == "__main__":
    main()
