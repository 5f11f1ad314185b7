"""How the collective learns small tasks, judged on BASE data: cards collectives scored on a held-out task.

    python -m bench.cards_collective                 # 3 seeds × 3 variants × 2 families, 20 episodes per setting
    python -m bench.cards_collective --quick         # 1 seed, 3 episodes (a smoke run, not a choice)

The card family of `bench.domains` deals the 32 base cards into 4 task files. Here a collective (library
defaults, `CollectiveOptions` overridden by the variant) learns task files 1-3 only, and the instant model
(its whole trunk, a cosine prototype head, no training) is scored on 5-way episodes drawn from task 4's 8
cards: base classes the collective never saw, so nothing here looks at the target ranks. Every variant sees
the same task files, seeds and episodes, so differences are paired (per seed, family, setting and episode)
against the first variant. Run R4 (docs/benchmark-domains.md) chose the collective's stopping rule with it;
runs C1 and C2 compared top-down growth and the joint anchor (`--variants "a;b"`), run W2 the wide preset.
Prints a table and writes var/bench/cards-collective/cards-collective.json.
"""
from __future__ import annotations

import argparse
import datetime
import time

import torch

from bench import git_commit, paired_text, write_report
from bench.domains import card_collective, concat, episode_tensors, episodes, joint_net, make_family
from learngene import Learngene, TrainOptions
from learngene.baselines import prototype_accuracy
from learngene.datasets import load_cards
from learngene.individual import make_net
from learngene.protocol import mean_ci, paired
from learngene.training import accuracy, logits_of

# name → (CollectiveOptions overrides, fixed passes per task or None). The first is the paired reference.
VARIANTS = {
    "stop after 3 passes without gain (before R4)": ({"patience": 3}, None),
    "whole schedule, best pass kept (default)": ({}, None),
    "whole schedule, last pass kept": ({}, 20),
    "top-down growth": ({"growth_order": "top-down"}, None),
    "wide preset": ({"preset": "wide"}, None),  # twice small's widths (run W2, docs/benchmark-domains.md)
    # Not a collective: bench.domains' joint anchor (the `small` preset at its final widths, every image of
    # task files 1-3 at once) with the recipe run F6 chose on held-out decks of those files; prototypes on
    # its pooled conv features are what the instant model computes on a collective's trunk.
    "joint net (F6's anchor recipe)": (None, None),
}
JOINT_RECIPES = {"cards-rgb32": {"lr": 1e-3, "steps": 300, "stop": 200},
                 "cards-gray28": {"lr": 3e-3, "steps": 300, "stop": 200}}
R4 = list(VARIANTS)[:3]  # what run R4 compared (the default of --variants)
FAMILIES = {"cards-rgb32": lambda: load_cards(32), "cards-gray28": lambda: load_cards(28).grayscale()}


def score_variant(fam, options: dict | None, fixed: int | None, seed: int, n_episodes: int) -> dict:
    """Grow on task files 1-3 (or train the joint net: `options` None); the instant model's (the joint net's
    prototypes') accuracy on task 4's 5-way episodes, per setting."""
    t0, held = time.perf_counter(), fam.tasks[3]
    if options is None:
        joint = joint_net(fam.spec, concat(fam.tasks[:3]), JOINT_RECIPES[fam.name], seed)
        out = {"grow_seconds": time.perf_counter() - t0, "passes": [], "settings": {}}

        def score(sx, sy, qx, qy, e):  # noqa: ARG001 - prototypes need no seed
            return prototype_accuracy(joint, sx, sy, qx, qy)
    else:
        c, grown = card_collective(fam, seed, fixed, **options)
        whole = Learngene.whole(c)
        out = {"grow_seconds": time.perf_counter() - t0, "passes": [r["epochs"] for r in grown],
               "accuracy_matrix": c.accuracy_matrix, "settings": {}}

        def score(sx, sy, qx, qy, e):  # what init=instant serves
            net, _, _ = make_net("instant", whole, whole, sx, sy, 5, TrainOptions(init="instant", seed=e))
            return accuracy(logits_of(net, qx, c.device), qy)
    for shots in (1, 5):
        out["settings"][f"5-way {shots}-shot"] = [
            score(*episode_tensors(held, fam.spec, s_idx, q_idx, chosen), e)
            for e, (s_idx, q_idx, chosen) in enumerate(episodes(held.y, list(range(held.num_classes)), 5, shots,
                                                                n_episodes, 7))]
    return out


def summarise(results: dict) -> list[dict]:
    """One row per variant and setting: mean over seeds and families' episodes, paired to the reference."""
    names, rows = list(results["variants"]), []
    for setting in ("5-way 1-shot", "5-way 5-shot"):
        for fam in results["families"]:
            def pooled(name):
                return [a for run in results["variants"][name][fam] for a in run["settings"][setting]]
            ref = pooled(names[0])
            for name in names:
                accs = pooled(name)
                mean, ci = mean_ci(accs)
                rows.append({"family": fam, "setting": setting, "variant": name, "accuracy_mean": mean,
                             "accuracy_ci95": ci, "paired_vs_reference": paired(accs, ref) if name != names[0]
                             else None})
    return rows


def table(results: dict) -> str:
    lines = ["| family | setting | variant | instant accuracy | − reference (paired) | passes per task |",
             "|---|---|---|---|---|---|"]
    for r in results["rows"]:
        passes = [p for run in results["variants"][r["variant"]][r["family"]] for p in run["passes"]]
        span = f"{min(passes)}–{max(passes)}" if passes else "–"
        lines.append(f"| {r['family']} | {r['setting']} | {r['variant']} | {r['accuracy_mean']:.3f} "
                     f"±{r['accuracy_ci95']:.3f} | {paired_text(r['paired_vs_reference'])} | "
                     f"{span} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, help="collective seeds (default 3, quick 1)")
    p.add_argument("--episodes", type=int, help="episodes per setting (default 20, quick 3)")
    p.add_argument("--variants", default=";".join(R4),
                   help="';'-separated variant names (the first is the paired reference); default: run R4's")
    p.add_argument("--out", default="var/bench/cards-collective/cards-collective.json")
    args = p.parse_args(argv)
    names = args.variants.split(";")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    seeds = args.seeds or (1 if args.quick else 3)
    n_episodes = args.episodes or (3 if args.quick else 20)
    t0 = time.perf_counter()
    results = {"run": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "commit": git_commit(), "seeds": seeds, "episodes": n_episodes, "quick": args.quick,
                       "torch_threads": torch.get_num_threads()},
               "families": list(FAMILIES), "variants": {name: {} for name in names}}
    for fam_name, load in FAMILIES.items():
        fam = make_family(fam_name, load(), 0)
        for name in names:
            options, fixed = VARIANTS[name]
            runs = [score_variant(fam, options, fixed, seed, n_episodes) for seed in range(seeds)]
            results["variants"][name][fam_name] = runs
            print(f"{fam_name} {name}: passes {[r['passes'] for r in runs]}, "
                  f"grown in {sum(r['grow_seconds'] for r in runs):.0f} s", flush=True)
    results["rows"] = summarise(results)
    results["seconds_total"] = time.perf_counter() - t0
    write_report(results, args.out, table)
    return results


if __name__ == "__main__":
    main()
