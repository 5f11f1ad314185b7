"""How `init="auto"` should decide at several shots, chosen on BASE data: each rule replayed on the same tasks.

    python -m bench.auto_rule            # both glyph pools + both card families, 5 shots
    python -m bench.auto_rule --quick    # small collectives, 2 tasks per cell (a smoke run, not a choice)
    python -m bench.auto_rule --sources novel --replay docs/runs/a1/auto-rule.json   # run A2 (see below)
    python -m bench.auto_rule --shots 1 --sources novel,cards   # run A3: the one-shot rule (see below)
    python -m bench.auto_rule --sources "" --replay docs/runs/a3/auto-rule.json   # today's rules on A3's records

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
With `--shots 1` there are no folds: `init="auto"` reads the evidence the learngene recorded when it was extracted
(`strategies["1"]`: each init on one-shot pseudo tasks from the collective's held-back classes). Every task also
records that evidence of its collective per pseudo task, at the library's 10 ways (the recorded evidence,
recomputed) and at 20 ways, so the one-shot rules, and rules at several shots that let the evidence set the order of
preference, replay on it (run A3).
Since run P1 every task also records the probe (`init="probe"`: a linear head on the frozen trunk) in its folds and
on its query, and the rules "with probe: …" replay `auto` with it as a fourth candidate (simplest first: instant,
the probe, the learngene individual, scratch); run P2 made that `auto`'s rule. Records from earlier runs replay
without those rules.
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
from bench.domains import CARD_FAMILIES, card_collective, card_tasks, make_family
from bench.recipe import collective_for, novel_tasks, unseen_tasks
from learngene import Collective, CollectiveOptions, Learngene, TrainOptions, ValidationOptions
from learngene.datasets import load_glyphs
from learngene.device import select_device
from learngene.individual import SIMPLEST_FIRST, cross_validate, make_net, pick_init
from learngene.protocol import mean_ci, paired
from learngene.selection import pseudo_pool, pseudo_tasks, task_accuracies
from learngene.training import accuracy, logits_of

INITS = ("learngene", "scratch", "instant", "probe")  # recorded per task (records before run P1 lack probe)
BASE_INITS = ("learngene", "scratch", "instant")  # what `auto` weighed before run P2 (and the one-shot evidence holds)
LEARNGENE_FIRST = ("learngene", "instant", "scratch")  # the small trained model unless another is clearly better
# name → rule(task record) → init; the first of each is the paired reference. A task record holds
# "outcomes" (cross-validation, several shots) and/or "evidence" (its collective's one-shot evidence).
RULES = {
    "best score (before A1)": lambda t: by_folds(t, 0.0),
    "simplest within 0.5 SE": lambda t: by_folds(t, 0.5),
    "simplest within 1 SE (A2's default)": lambda t: by_folds(t, 1.0),
    "simplest within 2 SE (A1's default)": lambda t: by_folds(t, 2.0),
    "learngene first within 1 SE": lambda t: by_folds(t, 1.0, LEARNGENE_FIRST),
    "learngene first within 2 SE": lambda t: by_folds(t, 2.0, LEARNGENE_FIRST),
    "within 1 SE, order from the evidence at 1 SE": lambda t: by_folds(t, 1.0, evidence_order(t, 1.0)),
    "within 1 SE, order from the evidence at 2 SE": lambda t: by_folds(t, 1.0, evidence_order(t, 2.0)),
    "always instant": lambda t: "instant",
    "always learngene": lambda t: "learngene",
    "with probe: best score": lambda t: by_folds(t, 0.0, SIMPLEST_FIRST, INITS),
    "with probe: simplest within 1 SE (default since P2)": lambda t: by_folds(t, 1.0, SIMPLEST_FIRST, INITS),
    "with probe: simplest within 2 SE": lambda t: by_folds(t, 2.0, SIMPLEST_FIRST, INITS),
    "always probe": lambda t: "probe",
}
ONE_SHOT_RULES = {
    "evidence, best score (today)": lambda t: by_evidence(t, 0.0, SIMPLEST_FIRST),
    "evidence, simplest within 1 SE": lambda t: by_evidence(t, 1.0, SIMPLEST_FIRST),
    "evidence, learngene first within 1 SE": lambda t: by_evidence(t, 1.0, LEARNGENE_FIRST),
    "evidence, learngene first within 2 SE": lambda t: by_evidence(t, 2.0, LEARNGENE_FIRST),
    "20-way evidence, best score": lambda t: by_evidence(t, 0.0, SIMPLEST_FIRST, "20-way"),
    "20-way evidence, learngene first within 1 SE": lambda t: by_evidence(t, 1.0, LEARNGENE_FIRST, "20-way"),
    "20-way evidence, learngene first within 2 SE": lambda t: by_evidence(t, 2.0, LEARNGENE_FIRST, "20-way"),
    "always instant": lambda t: "instant",
    "always learngene": lambda t: "learngene",
}
NEEDS_EVIDENCE = {r for r in RULES if "evidence" in r}
NEEDS_PROBE = {r for r in RULES if "probe" in r}


def by_folds(t: dict, within_se: float, order: tuple[str, ...] = SIMPLEST_FIRST,
             inits: tuple[str, ...] = BASE_INITS) -> str:
    outcomes = {i: v for i, v in t["outcomes"].items() if i in inits}
    return pick_init(scores_of(outcomes), outcomes, within_se, order)


def by_evidence(t: dict, within_se: float, order: tuple[str, ...], ways: str = "10-way") -> str:
    ev = t["evidence"][ways]
    return pick_init(scores_of(ev), ev, within_se, order)


def evidence_order(t: dict, within_se: float) -> tuple[str, ...]:
    """Learngene first where the collective's one-shot evidence has it within `within_se` paired SE of the best."""
    return LEARNGENE_FIRST if by_evidence(t, within_se, LEARNGENE_FIRST) == "learngene" else SIMPLEST_FIRST


def scores_of(outcomes: dict[str, list[float]]) -> dict[str, float]:
    return {i: float(np.mean(v)) for i, v in outcomes.items()}


def record(gene: Learngene, whole: Learngene, sx, sy, qx, qy, ways: int, seed: int, device,
           evidence: dict | None = None) -> dict:
    """One task: each init's accuracy on the query, and what `auto` reads: with several shots the cross-validation
    outcomes per init; with one shot the collective's `evidence` (one_shot_evidence)."""
    o = TrainOptions(seed=seed).resolved()
    t0 = time.perf_counter()
    seen = {} if evidence is None else {"evidence": evidence}
    if int(torch.bincount(sy).min()) >= 2:
        seen["outcomes"] = cross_validate(gene, whole, sx, sy, ways, o, INITS, device)
    cv_seconds = time.perf_counter() - t0
    acc = {}
    for init in INITS:
        net, _, _ = make_net(init, gene, whole, sx, sy, ways, o, device=device)
        acc[init] = accuracy(logits_of(net, qx, device), qy)
    return {**seen, "accuracy": acc, "cv_seconds": cv_seconds}


def one_shot_evidence(c: Collective, gene: Learngene, whole: Learngene, device) -> dict:
    """Each init on the one-shot pseudo tasks of `extract_learngene`'s evidence (same pool, tasks and seeds), per
    task, at its 10 ways and at 20; checks that the 10-way means are what the learngene recorded."""
    v = ValidationOptions()
    x, y, _ = pseudo_pool(c)
    ev = {}
    for ways in (10, 20):
        tasks = pseudo_tasks(x, y, ways, 1, v.evidence_tasks, v.seed + 1)
        ev[f"{ways}-way"] = {i: task_accuracies(i, tasks, whole, whole, gene.layers, v.seed, device)
                             for i in BASE_INITS}
    recorded = gene.strategies.get("1", {})
    for i in BASE_INITS:
        if i in recorded and abs(np.mean(ev["10-way"][i]) - recorded[i]) > 1e-4:
            print(f"  note: recomputed {i} evidence {np.mean(ev['10-way'][i]):.4f} against recorded "
                  f"{recorded[i]:.4f}", flush=True)
    print("  one-shot evidence: " + "; ".join(f"{w} " + ", ".join(f"{i} {np.mean(a):.3f}" for i, a in e.items())
                                               for w, e in ev.items()), flush=True)
    return ev


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
    evidence = one_shot_evidence(c, gene, whole, device)
    cells = {}
    for ways in (20, 5):
        cell = f"glyph {'novel-script ' if novel else ''}{ways}-way {args.shots}-shot"
        tasks = (novel_tasks(glyphs, c, ways, args.shots, args.tasks, 2000 + ways) if novel
                 else unseen_tasks(glyphs, c, rargs, ways, args.shots, args.tasks, 1000 + ways))
        cells[cell] = [record(gene, whole, sx, sy, qx, qy, w, i, device, evidence)
                       for i, (sx, sy, qx, qy, w) in enumerate(tasks)]
        print_cell(cell, cells[cell])
    return cells


def card_cells(args, device) -> dict[str, list[dict]]:
    cells = {}
    for name, load in CARD_FAMILIES.items():
        fam = make_family(name, load(), 0)
        runs = []
        for seed in range(args.seeds):
            c, _ = card_collective(fam, seed, epochs=3 if args.quick else None)
            whole, gene = Learngene.whole(c), Learngene.extract(c)  # what the service extracts
            print(f"{name} seed {seed}: learngene {gene.layers}", flush=True)
            evidence = one_shot_evidence(c, gene, whole, device)
            for e, (sx, sy, qx, qy, w) in enumerate(card_tasks(fam, c.spec, 5, args.shots, args.tasks, 7 + seed)):
                runs.append({"seed": seed, "learngene": gene.layers,
                             **record(gene, whole, sx, sy, qx, qy, w, e, device, evidence)})
        cells[f"{name} 5-way {args.shots}-shot"] = runs
        print_cell(f"{name} 5-way {args.shots}-shot", runs)
    return cells


def print_cell(cell: str, tasks: list[dict]) -> None:
    means = {i: np.mean([t["accuracy"][i] for t in tasks]) for i in INITS if i in tasks[0]["accuracy"]}
    print(f"  {cell}: {len(tasks)} tasks, " + ", ".join(f"{i} {m:.3f}" for i, m in means.items()), flush=True)


def replay(cells: dict[str, list[dict]]) -> list[dict]:
    """Each rule on each cell: the accuracy of the init it picks, paired against today's rule."""
    rows = []
    for cell, tasks in cells.items():
        rules = RULES if "outcomes" in tasks[0] else ONE_SHOT_RULES
        if "evidence" not in tasks[0]:  # recorded before run A3
            rules = {r: rule for r, rule in rules.items() if r not in NEEDS_EVIDENCE}
        if "probe" not in tasks[0]["accuracy"]:  # recorded before run P1
            rules = {r: rule for r, rule in rules.items() if r not in NEEDS_PROBE}
        reference = next(iter(rules))
        picked = {r: [rule(t) for t in tasks] for r, rule in rules.items()}
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
        mine = [next((r for r in rows if r["rule"] == rule and r["cell"] == c), None) for c in cells]
        text = []
        for r in mine:
            if r is None:  # a rule of the other number of shots
                text.append("–")
                continue
            picks = "" if not r["picks"] else " (" + "/".join(str(r["picks"].get(i, 0)) for i in SIMPLEST_FIRST) + ")"
            diff = "" if r["paired_vs_reference"] is None else f" {paired_text(r['paired_vs_reference'])}"
            text.append(f"{r['accuracy_mean']:.3f}{diff}{picks}")
        mean = np.mean([r["accuracy_mean"] for r in mine if r is not None])
        lines.append(f"| {rule} | " + " | ".join(text) + f" | {mean:.3f} |")
    return "\n".join(lines) + "\n\n(picks: instant/probe/learngene/scratch; paired against the first row)"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tasks", type=int,
                   help="tasks per cell (glyph) or per collective seed (cards); default 10, quick 2")
    p.add_argument("--seeds", type=int, help="card collectives per family (default 3, as run A1; quick 1)")
    p.add_argument("--shots", type=int, default=5, choices=(1, 5), help="shots per class of every cell")
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
                       "commit": git_commit(), "quick": args.quick, "shots": args.shots, "tasks": args.tasks,
                       "seeds": args.seeds,
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
