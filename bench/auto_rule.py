"""How `init="auto"` should decide at several shots, chosen on BASE data: each rule replayed on the same tasks.

    python -m bench.auto_rule            # both glyph pools + both card families, 5 shots
    python -m bench.auto_rule --quick    # small collectives, 2 tasks per cell (a smoke run, not a choice)
    python -m bench.auto_rule --sources novel --replay docs/runs/a1/auto-rule.json   # run A2 (see below)

With two or more shots per class, `init="auto"` cross-validates the learngene individual, scratch and the instant
model over the support (`learngene.individual.cross_validate`) and `pick_init` reads the per-image outcomes. Here,
for every base pseudo task, those outcomes are recorded once together with what each init really scores on the
task's query, so any decision rule can be replayed on them: every rule sees the same tasks (paired), at the cost of
one cross-validation. Nothing looks at a target episode:
- `glyph`: the unseen pool of bench/recipe.py (within-script episodes from base-script classes no task of the
  stream used) on its 5 × 60 collective (cached in the output folder) and validated learngene;
- `novel`: the same, but the collective learns base scripts only and the episodes come from the open-world scripts
  it never saw (kana, Hebrew, Georgian, Hangul jamo): as far from the collective as the targets' novel scripts are,
  which the within-script pool is not (run B7: there instant ties the learngene individual, on the targets it
  trails it by 6 points at 20-way 5-shot);
- `cards-rgb32`, `cards-gray28`: as in bench/cards_collective.py, a collective learns task files 1-3 of the
  family; episodes come from task 4's 8 base cards, which it never saw.
`--replay` adds the cells of an earlier run's JSON (its records do not depend on the rule), so run A2 computed only
the novel-script cells and replayed A1's glyph and card cells beside them.
Prints a table and writes var/bench/auto-rule/auto-rule.json (every task's outcomes and accuracies).
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
from bench.domains import episode_tensors, episodes, make_family
from bench.recipe import collective_for, script_tasks, unseen_tasks
from learngene import Collective, CollectiveOptions, Learngene, TrainOptions, ValidationOptions
from learngene.datasets import OPEN_WORLD_SCRIPTS, load_cards, load_glyphs
from learngene.device import select_device
from learngene.individual import SIMPLEST_FIRST, cross_validate, make_net, pick_init
from learngene.protocol import mean_ci, paired
from learngene.training import accuracy, logits_of

INITS = ("learngene", "scratch", "instant")
LEARNGENE_FIRST = ("learngene", "instant", "scratch")  # the small trained model unless another is clearly better
# name → rule(outcomes per init) → init. The first is today's rule, the paired reference.
RULES = {
    "best score (before A1)": lambda out: pick_init(scores_of(out)),
    "simplest within 0.5 SE": lambda out: pick_init(scores_of(out), out, 0.5),
    "simplest within 1 SE (default since A2)": lambda out: pick_init(scores_of(out), out, 1.0),
    "simplest within 2 SE (A1's default)": lambda out: pick_init(scores_of(out), out, 2.0),
    "learngene first within 1 SE": lambda out: pick_init(scores_of(out), out, 1.0, LEARNGENE_FIRST),
    "learngene first within 2 SE": lambda out: pick_init(scores_of(out), out, 2.0, LEARNGENE_FIRST),
    "always instant": lambda out: "instant",
    "always learngene": lambda out: "learngene",
}
CARDS = {"cards-rgb32": lambda: load_cards(32), "cards-gray28": lambda: load_cards(28).grayscale()}


def scores_of(outcomes: dict[str, list[float]]) -> dict[str, float]:
    return {i: float(np.mean(v)) for i, v in outcomes.items()}


def record(gene: Learngene, whole: Learngene, sx, sy, qx, qy, ways: int, seed: int, device) -> dict:
    """One task: cross-validation outcomes per init and each init's accuracy on the query."""
    o = TrainOptions(seed=seed).resolved()
    t0 = time.perf_counter()
    outcomes = cross_validate(gene, whole, sx, sy, ways, o, INITS, device)
    cv_seconds = time.perf_counter() - t0
    acc = {}
    for init in INITS:
        net, _, _ = make_net(init, gene, whole, sx, sy, ways, o, device=device)
        acc[init] = accuracy(logits_of(net, qx, device), qy)
    return {"outcomes": outcomes, "accuracy": acc, "cv_seconds": cv_seconds}


def glyph_cells(args, device, novel: bool = False) -> dict[str, list[dict]]:
    """Glyph cells on a 5 × 60 collective (cached in the output folder): by default within-script episodes from
    base-script classes no task used; with `novel`, the collective learns base scripts only and the episodes come
    from the open-world scripts it never saw (kana, Hebrew, Georgian, Hangul jamo), as the targets' scripts are."""
    glyphs = load_glyphs(cache_path=args.glyphs)
    out = Path(args.out_dir) / "novel-scripts" if novel else Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rargs = SimpleNamespace(out=str(out), seed=0, tasks=3 if args.quick else 5,
                            base_per_task=20 if args.quick else 60, collective_options={}, open_world=not novel,
                            collective_max_epochs=3 if args.quick else CollectiveOptions().epochs)
    c, _ = collective_for(glyphs, rargs)
    whole, gene = Learngene.whole(c), Learngene.extract(c, "validated", validation=ValidationOptions())
    print(f"{'base-script' if novel else 'glyph'} collective: {c.parameters:,} parameters, learngene {gene.layers}",
          flush=True)
    open_world = {s: ks for s in OPEN_WORLD_SCRIPTS if (ks := glyphs.classes_of([s]))}
    cells = {}
    for ways in (20, 5):
        cell = f"glyph {'novel-script ' if novel else ''}{ways}-way 5-shot"
        tasks = (script_tasks(glyphs, c, open_world, ways, 5, args.tasks, 2000 + ways) if novel
                 else unseen_tasks(glyphs, c, rargs, ways, 5, args.tasks, 1000 + ways))
        cells[cell] = [record(gene, whole, sx, sy, qx, qy, w, i, device) for i, (sx, sy, qx, qy, w) in enumerate(tasks)]
        print_cell(cell, cells[cell])
    return cells


def card_cells(args, device) -> dict[str, list[dict]]:
    cells = {}
    for name, load in CARDS.items():
        fam = make_family(name, load(), 0)
        held, runs = fam.tasks[3], []
        for seed in range(args.seeds):
            c = Collective.create(fam.spec, preset="small", seed=seed)
            for i, ds in enumerate(fam.tasks[:3]):
                c.learn_task(ds, epochs=3 if args.quick else None, name=f"task-{i + 1}")
            whole, gene = Learngene.whole(c), Learngene.extract(c)  # what the service extracts
            print(f"{name} seed {seed}: learngene {gene.layers}", flush=True)
            for e, (s_idx, q_idx, chosen) in enumerate(episodes(held.y, list(range(held.num_classes)), 5, 5,
                                                                args.tasks, 7 + seed)):
                sx, sy, qx, qy = episode_tensors(held, c.spec, s_idx, q_idx, chosen)
                runs.append({"seed": seed, "learngene": gene.layers,
                             **record(gene, whole, sx, sy, qx, qy, 5, e, device)})
        cells[f"{name} 5-way 5-shot"] = runs
        print_cell(f"{name} 5-way 5-shot", runs)
    return cells


def print_cell(cell: str, tasks: list[dict]) -> None:
    means = {i: np.mean([t["accuracy"][i] for t in tasks]) for i in INITS}
    print(f"  {cell}: {len(tasks)} tasks, " + ", ".join(f"{i} {m:.3f}" for i, m in means.items()), flush=True)


def replay(cells: dict[str, list[dict]]) -> list[dict]:
    """Each rule on each cell: the accuracy of the init it picks, paired against today's rule."""
    rows, reference = [], next(iter(RULES))
    for cell, tasks in cells.items():
        picked = {r: [rule(t["outcomes"]) for t in tasks] for r, rule in RULES.items()}
        accs = {r: [t["accuracy"][p] for t, p in zip(tasks, picks)] for r, picks in picked.items()}
        accs["oracle (best init per task)"] = [max(t["accuracy"].values()) for t in tasks]
        for r, a in accs.items():
            m, ci = mean_ci(a)
            rows.append({"cell": cell, "rule": r, "accuracy_mean": m, "accuracy_ci95": ci, "accuracies": a,
                         "picks": {i: picked[r].count(i) for i in SIMPLEST_FIRST} if r in picked else None,
                         "paired_vs_reference": paired(a, accs[reference]) if r != reference else None})
    return rows


def table(results: dict) -> str:
    rows = results["rows"]
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    lines = ["| rule | " + " | ".join(cells) + " | mean over cells |", "|---" * (len(cells) + 2) + "|"]
    for rule in dict.fromkeys(r["rule"] for r in rows):
        mine = [next(r for r in rows if r["rule"] == rule and r["cell"] == c) for c in cells]
        text = []
        for r in mine:
            picks = "" if not r["picks"] else " (" + "/".join(str(r["picks"][i]) for i in SIMPLEST_FIRST) + ")"
            diff = "" if r["paired_vs_reference"] is None else f" {paired_text(r['paired_vs_reference'])}"
            text.append(f"{r['accuracy_mean']:.3f}{diff}{picks}")
        mean = np.mean([r["accuracy_mean"] for r in mine])
        lines.append(f"| {rule} | " + " | ".join(text) + f" | {mean:.3f} |")
    return "\n".join(lines) + "\n\n(picks: instant/learngene/scratch; paired against the first row)"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tasks", type=int,
                   help="tasks per cell (glyph) or per collective seed (cards); default 10, quick 2")
    p.add_argument("--seeds", type=int, help="card collectives per family (default 3, as run A1; quick 1)")
    p.add_argument("--sources", default="glyph,novel,cards", help="any of glyph, novel (novel-script glyphs), cards")
    p.add_argument("--replay", metavar="JSON", help="also replay the rules on the cells recorded in an earlier run's "
                   "JSON (cell names get its run's commit)")
    p.add_argument("--glyphs", default="var/data/glyphs.npz")
    p.add_argument("--out", default="var/bench/auto-rule/auto-rule.json")
    args = p.parse_args(argv)
    args.tasks = args.tasks or (2 if args.quick else 10)
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.out_dir = str(Path(args.out).parent)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    t0, device = time.perf_counter(), select_device()
    results = {"run": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "commit": git_commit(), "quick": args.quick, "tasks": args.tasks, "seeds": args.seeds,
                       "torch_threads": torch.get_num_threads(), "device": str(device)},
               "cells": {}}
    sources = args.sources.split(",")
    if "glyph" in sources:
        results["cells"].update(glyph_cells(args, device))
    if "novel" in sources:
        results["cells"].update(glyph_cells(args, device, novel=True))
    if "cards" in sources:
        results["cells"].update(card_cells(args, device))
    if args.replay:
        earlier = json.loads(Path(args.replay).read_text())
        results["run"]["replayed"] = {"path": args.replay, **earlier["run"]}
        results["cells"].update({f"{cell} ({earlier['run']['commit'][:7]})": tasks
                                 for cell, tasks in earlier["cells"].items()})
    results["rows"] = replay(results["cells"])
    results["seconds_total"] = time.perf_counter() - t0
    write_report(results, args.out, table)
    return results


if __name__ == "__main__":
    main()
