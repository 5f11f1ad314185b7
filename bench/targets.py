"""Score cached collectives on the glyph benchmark's target episodes, paired episode by episode.

A base-data benchmark (bench/recipe.py) caches the collective it grew in its output folder
(`collective.safetensors`). This scores each given collective's individuals on `bench.fewshot`'s target episodes
(novel scripts, the same seeds), so a question first decided on base data (a wider preset, another stream) can be
checked on the targets without growing `make bench`'s collective again. It chooses nothing: run it after the
choice. Writes `<out>/<name>/fewshot.json` (rows in bench.fewshot's shape, every episode) per collective and
`<out>/pairs.json` (each later collective against the first, via bench.pair_runs).

    python -m bench.targets var/bench/w1-small var/bench/w1-wide --out var/bench/w1-targets
"""
from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

from bench import git_commit, paired_text
from bench.fewshot import DEFAULT, NO_DISTILL, target_episode, target_seed
from bench.pair_runs import pair_runs
from learngene import Collective, Learngene, TrainOptions, ValidationOptions
from learngene.datasets import load_glyphs
from learngene.device import select_device
from learngene.individual import make_net
from learngene.protocol import mean_ci
from learngene.training import accuracy, logits_of

FINE_TUNE = "fine-tune whole collective"


def score(glyphs, c: Collective, settings: list[tuple[int, int]], episodes: int) -> tuple[list[dict], dict]:
    """bench.fewshot's rows for the learngene individual (with and without distillation), instant and fine-tuning
    the whole collective, on the first `episodes` target episodes of each setting."""
    device = select_device()
    whole = Learngene.whole(c)
    gene = Learngene.extract(c, "validated", validation=ValidationOptions())
    methods = {  # method → (init, learngene, trunk, inherited layers or None for the learngene's own)
        DEFAULT: ("learngene", gene, whole, None),
        NO_DISTILL: ("learngene", gene, None, None),
        "instant": ("instant", gene, whole, None),
        FINE_TUNE: ("learngene", whole, None, list(range(len(c.net.blocks)))),
    }
    rows = []
    for ways, shots in settings:
        accs: dict[str, list[float]] = {m: [] for m in methods}
        secs = dict.fromkeys(methods, 0.0)
        for episode in range(episodes):
            sx, sy, qx, qy = target_episode(glyphs, c.spec, ways, shots, episode)
            opts = TrainOptions(seed=target_seed(ways, shots, episode))  # as bench.fewshot trains on it
            for method, (init, lg, trunk, layers) in methods.items():
                t0 = time.perf_counter()
                net, _, _ = make_net(init, lg, trunk, sx, sy, ways, opts, layers, device)
                accs[method].append(accuracy(logits_of(net, qx, device), qy))
                secs[method] += time.perf_counter() - t0
            print(f"  {ways}-way {shots}-shot episode {episode + 1}: "
                  + ", ".join(f"{m} {a[-1]:.3f}" for m, a in accs.items()), flush=True)
        for method, a in accs.items():
            m, ci = mean_ci(a)
            rows.append({"method": method, "ways": ways, "shots": shots, "accuracy_mean": m, "accuracy_ci95": ci,
                         "seconds_per_task": secs[method] / episodes, "episodes": len(a), "accuracies": a})
    return rows, {"learngene": gene.layers, "parameters": c.parameters, "widths": c.info()["widths"]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("collectives", nargs="+", help="folders holding a collective.safetensors (the first: reference)")
    p.add_argument("--out", default="var/bench/targets")
    p.add_argument("--episodes", type=int, default=20, help="target episodes per setting (bench.fewshot: 20)")
    p.add_argument("--settings", default="20x1,20x5,5x5", help="ways x shots of the target tasks")
    p.add_argument("--glyphs", default="var/data/glyphs.npz")
    args = p.parse_args(argv)
    settings = [tuple(int(v) for v in s.split("x")) for s in args.settings.split(",")]
    glyphs, out, commit = load_glyphs(cache_path=args.glyphs), Path(args.out), git_commit()
    dirs = []
    for folder in map(Path, args.collectives):
        t0 = time.perf_counter()
        c = Collective.from_bytes((folder / "collective.safetensors").read_bytes())
        rows, info = score(glyphs, c, settings, args.episodes)
        run = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
               "collective": str(folder), "episodes": args.episodes, "settings": settings,
               "seconds": time.perf_counter() - t0, **info}
        dirs.append(out / folder.name)
        dirs[-1].mkdir(parents=True, exist_ok=True)
        (dirs[-1] / "fewshot.json").write_text(json.dumps({"run": run, "rows": rows}, indent=2))
        print(f"{folder}: learngene {info['learngene']}, {info['parameters']:,} parameters, widths {info['widths']},"
              f" {run['seconds']:.0f}s", flush=True)
    pairs = {d.name: pair_runs(dirs[0], d) for d in dirs[1:]}
    (out / "pairs.json").write_text(json.dumps({"reference": dirs[0].name, "pairs": pairs}, indent=2))
    print(f"\n| setting | method | {dirs[0].name} | collective | accuracy | − {dirs[0].name} (paired) |")
    print("|---|---|---|---|---|---|")
    for name, rows in pairs.items():
        for r in rows:
            print(f"| {r['ways']}-way {r['shots']}-shot | {r['method']} | {r['a'][0]:.3f} | {name} | "
                  f"{r['b'][0]:.3f} | {paired_text(r['b_minus_a'])} |")
    return pairs


if __name__ == "__main__":
    main()
