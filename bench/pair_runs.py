"""Pair two benchmark runs task by task: each method of run B against the same method of run A.

`bench.fewshot`'s target episodes are seeded by setting and index alone, so two runs on different collectives (a
larger base stream, a regrown collective) evaluate every method on the same tasks; their per-episode accuracies
(the `accuracies` lists in `fewshot.json`) can be paired. So can two `bench.recipe` runs' pseudo tasks
(`recipe.json`, seeded by pool and setting alone), and the rows `bench.targets` writes.

    python -m bench.pair_runs docs/runs/b8 docs/runs/b9 --out docs/runs/b9/pair-b8.json
    python -m bench.pair_runs var/bench/w1-small var/bench/w1-wide    # two bench.recipe runs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench import paired_text
from learngene.protocol import mean_ci, paired


def accuracies(run_dir: Path) -> dict[tuple[int, int], dict[str, list[float]]]:
    """(ways, shots) → method → per-episode accuracies, from a run's fewshot.json, or from a bench.recipe run's
    recipe.json (method "<pool>: <variant>"; its tasks are seeded by pool and setting alone, too)."""
    if (run_dir / "fewshot.json").exists():
        rows = json.loads((run_dir / "fewshot.json").read_text())["rows"]
    else:
        rows = [{**r, "method": f"{r['pool']}: {r['variant']}"}
                for r in json.loads((run_dir / "recipe.json").read_text())["rows"]]
    out: dict[tuple[int, int], dict[str, list[float]]] = {}
    for row in rows:
        out.setdefault((row["ways"], row["shots"]), {})[row["method"]] = row["accuracies"]
    return out


def pair_runs(a_dir: Path, b_dir: Path) -> list[dict]:
    """One row per (setting, method) present in both runs: both means and the paired difference B − A."""
    a, b = accuracies(a_dir), accuracies(b_dir)
    rows = []
    for setting in sorted(set(a) & set(b), key=lambda s: (-s[0], s[1])):
        for method in a[setting]:
            if method not in b[setting] or len(a[setting][method]) != len(b[setting][method]):
                continue
            rows.append({"ways": setting[0], "shots": setting[1], "method": method,
                         "a": mean_ci(a[setting][method]), "b": mean_ci(b[setting][method]),
                         "b_minus_a": paired(b[setting][method], a[setting][method])})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_a", type=Path, help="folder of the first run (its fewshot.json or recipe.json)")
    p.add_argument("run_b", type=Path, help="folder of the second run")
    p.add_argument("--out", type=Path, help="write the rows here as JSON")
    args = p.parse_args(argv)
    rows = pair_runs(args.run_a, args.run_b)
    print(f"{'setting':<14}{'method':<32}{'A':>7}{'B':>7}   B − A [95% interval] wins/losses")
    for r in rows:
        d = r["b_minus_a"]
        print(f"{r['ways']}-way {r['shots']}-shot  {r['method'][:30]:<32}{r['a'][0]:>7.3f}{r['b'][0]:>7.3f}   "
              f"{paired_text(d)} {d['wins']}/{d['losses']}")
    if args.out:
        args.out.write_text(json.dumps({"run_a": str(args.run_a), "run_b": str(args.run_b), "rows": rows},
                                       indent=1))
    return rows


if __name__ == "__main__":
    main()
