"""Which head on the collective's frozen trunk, scored on BASE data: class prototypes or a linear probe.

    python -m bench.heads --sources cards --seeds 2 --tasks 10            # run H1, held-out base cards
    python -m bench.heads --sources novel --recipe-out var/bench/r6/a     # run H1, novel scripts (R6's collective)
    python -m bench.heads --quick                                          # a smoke run, not a choice

The instant individual is the collective's trunk with a cosine head on the support's class means. The glyph
benchmark's "linear probe on collective" row (a logistic-regression head on the same frozen features) read 2.9
and 1.4 points above it at 20- and 5-way 5-shot (run B8, target episodes), which must not choose anything. Here
the instant model, the probe individual (`init=probe`: that regression, `learngene.training.linear_probe`) and
the default learngene individual are scored on the same base pseudo tasks: within-script episodes from the
open-world scripts a base-scripts-only collective never saw (bench/recipe.py's `novel` pool; its collective is
grown in, or reused from, `--recipe-out`), and 5-way episodes from task file 4 of each card family under
collectives that learned files 1-3 (bench/auto_rule.py's card cells, `--seeds` collectives per family).
Paired against the prototypes. Prints a table and writes `--out` (JSON, every task).
"""
from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path
from types import SimpleNamespace

from bench import git_commit, paired_text, write_report
from bench.domains import CARD_FAMILIES, card_collective, card_tasks, make_family
from bench.recipe import collective_for, novel_tasks
from learngene import CollectiveOptions, Learngene, TrainOptions, ValidationOptions
from learngene.datasets import load_glyphs
from learngene.device import select_device
from learngene.individual import make_net
from learngene.protocol import mean_ci, paired
from learngene.training import accuracy, logits_of

METHODS = ("prototypes (instant)", "linear probe", "learngene (default)")


def score_task(gene: Learngene, whole: Learngene, task: tuple, seed: int, device) -> dict[str, float]:
    sx, sy, qx, qy, ways = task
    o = TrainOptions(seed=seed)
    instant, _, _ = make_net("instant", gene, whole, sx, sy, ways, o, device=device)
    probe, _, _ = make_net("probe", gene, whole, sx, sy, ways, o, device=device)
    learngene, _, _ = make_net("learngene", gene, whole, sx, sy, ways, o, device=device)
    return {"prototypes (instant)": accuracy(logits_of(instant, qx, device), qy),
            "linear probe": accuracy(logits_of(probe, qx, device), qy),
            "learngene (default)": accuracy(logits_of(learngene, qx, device), qy)}


def glyph_cells(args, device) -> dict[str, list[dict]]:
    glyphs = load_glyphs(cache_path=args.glyphs)
    rargs = SimpleNamespace(out=args.recipe_out, seed=0, tasks=3 if args.quick else 5,
                            base_per_task=20 if args.quick else 60, collective_options={}, open_world=False,
                            collective_max_epochs=3 if args.quick else CollectiveOptions().epochs)
    Path(args.recipe_out).mkdir(parents=True, exist_ok=True)
    c, _ = collective_for(glyphs, rargs)
    whole, gene = Learngene.whole(c), Learngene.extract(c, "validated", validation=ValidationOptions())
    cells = {}
    for ways, shots in ((20, 1), (20, 5), (5, 5)):
        tasks = novel_tasks(glyphs, c, ways, shots, args.tasks, 100 * shots + ways)
        cells[f"glyph novel-script {ways}-way {shots}-shot"] = [score_task(gene, whole, t, i, device)
                                                                 for i, t in enumerate(tasks)]
        print_cell(f"glyph novel-script {ways}-way {shots}-shot", cells[f"glyph novel-script {ways}-way {shots}-shot"])
    return cells


def card_cells(args, device) -> dict[str, list[dict]]:
    cells = {}
    for name, load in CARD_FAMILIES.items():
        fam = make_family(name, load(), 0)
        runs = {1: [], 5: []}
        for seed in range(args.seeds):
            c, _ = card_collective(fam, seed, epochs=3 if args.quick else None)
            whole, gene = Learngene.whole(c), Learngene.extract(c)
            for shots in runs:
                runs[shots] += [score_task(gene, whole, t, e, device)
                                for e, t in enumerate(card_tasks(fam, c.spec, 5, shots, args.tasks, 7 + seed))]
        for shots, tasks in runs.items():
            cells[f"{name} 5-way {shots}-shot"] = tasks
            print_cell(f"{name} 5-way {shots}-shot", tasks)
    return cells


def print_cell(cell: str, tasks: list[dict]) -> None:
    print(f"  {cell}: {len(tasks)} tasks, " + ", ".join(f"{m} {mean_ci([t[m] for t in tasks])[0]:.3f}"
                                                         for m in METHODS), flush=True)


def table(results: dict) -> str:
    lines = ["| cell | " + " | ".join(METHODS) + " | probe − prototypes (paired) | learngene − probe (paired) |",
             "|---" * (len(METHODS) + 3) + "|"]
    for cell, tasks in results["cells"].items():
        acc = {m: [t[m] for t in tasks] for m in METHODS}
        means = " | ".join(f"{mean_ci(acc[m])[0]:.3f}" for m in METHODS)
        lines.append(f"| {cell} ({len(tasks)}) | {means} | "
                     f"{paired_text(paired(acc['linear probe'], acc['prototypes (instant)']))} | "
                     f"{paired_text(paired(acc['learngene (default)'], acc['linear probe']))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tasks", type=int, help="tasks per cell (glyph) or per collective seed (cards); default 20")
    p.add_argument("--seeds", type=int, help="card collectives per family (default 3, quick 1)")
    p.add_argument("--sources", default="novel,cards")
    p.add_argument("--recipe-out", default="var/bench/recipe-novel",
                   help="bench.recipe output folder holding (or to hold) the base-scripts-only collective")
    p.add_argument("--glyphs", default="var/data/glyphs.npz")
    p.add_argument("--out", default="var/bench/heads/heads.json")
    args = p.parse_args(argv)
    args.tasks = args.tasks or (2 if args.quick else 20)
    args.seeds = args.seeds or (1 if args.quick else 3)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    t0, device = time.perf_counter(), select_device()
    results = {"run": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "commit": git_commit(), "quick": args.quick, "tasks": args.tasks, "seeds": args.seeds,
                       "recipe_out": args.recipe_out, "device": str(device)}, "cells": {}}
    if "novel" in args.sources.split(","):
        results["cells"].update(glyph_cells(args, device))
    if "cards" in args.sources.split(","):
        results["cells"].update(card_cells(args, device))
    results["seconds_total"] = time.perf_counter() - t0
    write_report(results, args.out, table)
    return results


if __name__ == "__main__":
    main()
