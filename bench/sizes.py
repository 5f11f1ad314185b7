"""Size curve on the glyph set: one learngene, individuals at five budgets, against scratch and Weight Selection.

    python -m bench.sizes            # full: 5 tasks × 60 classes, 10 target tasks per setting (<= 30 min, 2 cores)
    python -m bench.sizes --quick    # the same protocol, small (<= 4 min)

1. Grow a `small` collective as bench/fewshot.py does (its `grow`), take the service's learngene (validated).
2. Budgets: ¼×, ½×, 1×, 1.5×, 2× today's individual at 20 classes (1× is exactly today's individual).
3. Shrink: even spread against importance, measured on pseudo tasks from the collective's held-back BASE
   classes (what `--validation-tasks` of bench/fewshot.py build), never on the target episodes; the winner
   is used for the target episodes, and both are reported.
4. Target episodes (bench/fewshot.py's seeds and novel scripts), 20-way 5-shot and 1-shot; per budget, on the
   same episodes: the learngene individual (`max_parameters`), scratch of the same architecture, and Weight
   Selection from the whole collective (every trunk layer shrunk or widened, evenly spread, to the same
   architecture; then the same recipe, every layer inherited). Accuracy ± t interval, paired learngene −
   scratch, parameters, median seconds per model.
Writes var/bench/sizes.json, sizes_episodes.jsonl and sizes.png (accuracy against parameters, one line per method).
"""
from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench import git_commit, paired_text
from bench.fewshot import K, grow
from learngene import Collective, CollectiveOptions, Learngene, TrainOptions, ValidationOptions, to_input
from learngene.datasets import NOVEL_SCRIPTS, load_glyphs
from learngene.device import select_device
from learngene.individual import fit, make_net
from learngene.model import count_parameters
from learngene.protocol import mean_ci, paired, sample_episode
from learngene.selection import pseudo_pool, pseudo_tasks
from learngene.sizing import LADDER, default_parameters, sized_net
from learngene.training import accuracy, logits_of

METHODS = ("learngene", "scratch", "weight selection")


# How inherited layers are narrowed: (shrink, least-squares refit), compared on base-class pseudo tasks.
VARIANTS = {"importance": ("importance", False), "even": ("even", False), "importance, refit": ("importance", True)}


def train_at(method: str, lg: Learngene, whole: Learngene, sx, sy, ways: int, budget: int, seed: int,
             variant: str, device) -> torch.nn.Module:
    """One model of `method` within `budget` parameters, trained by the individual's recipe."""
    shrink, refit = VARIANTS[variant]
    opts = TrainOptions(seed=seed, max_parameters=budget, shrink=shrink, refit=refit)
    if method in ("learngene", "scratch"):
        return make_net(method, lg, None, sx, sy, ways, opts, device=device)[0]
    net, size = sized_net(lg, ways, budget, shrink="even", seed=seed, weights_from=whole, support=sx,
                          refit=False, device=device)  # Weight Selection, as published
    fit(net, sx, sy, opts, inherited=size["inherited"], device=device)
    return net


def choose_shrink(c, lg: Learngene, whole: Learngene, budgets: list[int], args, device) -> dict:
    """Even spread vs importance (vs importance with refit) on base-class pseudo tasks, at the budgets where
    layers are shrunk."""
    x_all, y_all, pool = pseudo_pool(c)
    tasks = pseudo_tasks(x_all, y_all, args.ways, 5, args.validation_tasks, args.seed + 7)
    shrinking = [b for b, f in zip(budgets, args.budgets) if f < 1]
    scores = {s: [] for s in VARIANTS}
    for ti, (sx, sy, qx, qy, ways) in enumerate(tasks):
        for b in shrinking:
            for s in VARIANTS:
                net = train_at("learngene", lg, whole, sx, sy, ways, b, args.seed + ti, s, device)
                scores[s].append(accuracy(logits_of(net, qx, device), qy))
    means = {s: float(np.mean(v)) if v else float("nan") for s, v in scores.items()}
    order = list(VARIANTS)
    winner = max(order, key=lambda s: (means[s], -order.index(s)))  # a tie keeps the simpler, earlier one
    print(f"shrink on {len(tasks)} base-class pseudo tasks ({pool}): " +
          ", ".join(f"{s} {m:.3f}" for s, m in means.items()) + f" → {winner}", flush=True)
    return {"pool": pool, "tasks": len(tasks), "ways": tasks[0][4] if tasks else None, "shots": 5,
            "budgets": shrinking, "accuracy": means, "per_task": scores, "chosen": winner,
            "paired_importance_minus_even": paired(scores["importance"], scores["even"]) if tasks else None,
            "paired_refit_minus_importance": paired(scores["importance, refit"], scores["importance"])
            if tasks else None}


def evaluate(glyphs, c, lg: Learngene, budgets: list[int], shrink: str, args, device) -> list[dict]:
    whole = Learngene.whole(c)
    spec, labels = c.spec, glyphs.labels
    rows = []
    for ways, shots in args.settings:
        scripts = [s for s in NOVEL_SCRIPTS if len(glyphs.classes_of([s])) >= ways]
        acc = {(m, b): [] for m in METHODS for b in budgets}
        secs = {(m, b): [] for m in METHODS for b in budgets}
        params: dict[tuple, int] = {}
        for episode in range(args.episodes):
            seed = 1000 * ways + 100 * shots + episode  # bench/fewshot.py's episodes
            script = scripts[episode % len(scripts)]
            s_idx, q_idx, chosen = sample_episode(labels, glyphs.classes_of([script]), ways, shots, seed)
            remap = {cid: i for i, cid in enumerate(chosen)}
            sx, qx = to_input(glyphs.x[s_idx], spec), to_input(glyphs.x[q_idx], spec)
            sy = torch.tensor([remap[int(v)] for v in labels[s_idx]])
            qy = torch.tensor([remap[int(v)] for v in labels[q_idx]])
            for b in budgets:
                for m in METHODS:
                    t0 = time.perf_counter()
                    net = train_at(m, lg, whole, sx, sy, ways, b, seed, shrink, device)
                    secs[(m, b)].append(time.perf_counter() - t0)
                    acc[(m, b)].append(accuracy(logits_of(net, qx, device), qy))
                    params[(m, b)] = count_parameters(net)
            with open(Path(args.out) / "sizes_episodes.jsonl", "a") as f:  # kept as it goes
                f.write(json.dumps({"ways": ways, "shots": shots, "episode": episode, "seed": seed, "accuracies": {
                    f"{m}@{b}": acc[(m, b)][-1] for m in METHODS for b in budgets}}) + "\n")
            print(f"  {ways}-way {shots}-shot episode {episode + 1}: " + ", ".join(
                f"{b}: " + "/".join(f"{acc[(m, b)][-1]:.2f}" for m in METHODS) for b in budgets), flush=True)
        for b, factor in zip(budgets, args.budgets):
            for m in METHODS:
                mean, ci = mean_ci(acc[(m, b)])
                row = {"ways": ways, "shots": shots, "budget_factor": factor, "max_parameters": b, "method": m,
                       "parameters": params[(m, b)], "accuracy_mean": mean, "accuracy_ci95": ci,
                       "seconds_per_model": float(np.median(secs[(m, b)])), "accuracies": acc[(m, b)]}
                if m == "learngene":
                    row["paired"] = {o: paired(acc[(m, b)], acc[(o, b)]) for o in METHODS if o != m}
                rows.append(row)
    return rows


def plot(rows: list[dict], settings: list[tuple[int, int]], path: Path) -> None:
    """Accuracy against parameters, one panel per setting, one line per method (matplotlib object API)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(5.2 * len(settings), 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (ways, shots) in zip(fig.subplots(1, len(settings), squeeze=False)[0], settings):
        for m in METHODS:
            pts = [r for r in rows if (r["ways"], r["shots"], r["method"]) == (ways, shots, m)]
            ax.errorbar([r["parameters"] for r in pts], [r["accuracy_mean"] for r in pts],
                        yerr=[r["accuracy_ci95"] for r in pts], marker="o", capsize=3, label=m)
        ax.set_xscale("log")
        ax.set_xticks(sorted({r["parameters"] for r in rows if (r["ways"], r["shots"]) == (ways, shots)}))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_ylim(0, 1.02)  # accuracies; the t intervals of two-episode runs can reach past [0, 1]
        ax.set_xlabel("parameters (head included)")
        ax.set_ylabel("query accuracy")
        ax.set_title(f"{ways}-way {shots}-shot")
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="var/bench")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, help="target tasks per setting (default 10, quick 2)")
    p.add_argument("--tasks", type=int, help="collective tasks (default 5, quick 2)")
    p.add_argument("--base-per-task", type=int, help="base classes per task (default 60, quick 15)")
    p.add_argument("--validation-tasks", type=int, help="base-class pseudo tasks (default 4, quick 1)")
    p.add_argument("--ways", type=int, default=20, help="ways of the pseudo tasks and of the budgets' reference")
    p.add_argument("--settings", default="20x5,20x1", help="ways x shots of the target tasks")
    p.add_argument("--budgets", default=",".join(f"{f:g}" for f in LADDER), help="multiples of today's size")
    p.add_argument("--glyphs", default="var/data/glyphs.npz", help="glyph set cache (rendered on first use)")
    p.add_argument("--plot-only", metavar="JSON", help="redraw the PNG beside an earlier run's sizes.json and stop")
    p.add_argument("--collective", help="a collective written by an earlier run (sizes_collective.safetensors): "
                   "skip growing; the JSON says so")
    args = p.parse_args(argv)
    if args.plot_only:
        report = json.loads(Path(args.plot_only).read_text())
        plot(report["rows"], [tuple(s) for s in report["run"]["settings"]], Path(args.plot_only).with_suffix(".png"))
        return report
    args.mode = "quick" if args.quick else "full"
    args.settings = [tuple(int(v) for v in s.split("x")) for s in args.settings.split(",")]
    args.budgets = [float(f) for f in args.budgets.split(",")]
    if args.quick:
        defaults = {"tasks": 2, "base_per_task": 15, "episodes": 2, "validation_tasks": 1}
        args.collective_max_epochs, val = 3, ValidationOptions(tasks=1, ways=5)
    else:
        defaults = {"tasks": 5, "base_per_task": 60, "episodes": 10, "validation_tasks": 4}
        args.collective_max_epochs, val = CollectiveOptions().epochs, ValidationOptions()
    for k, v in defaults.items():
        setattr(args, k, getattr(args, k) or v)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sizes_episodes.jsonl").unlink(missing_ok=True)
    torch.manual_seed(args.seed)
    t_start, commit, device = time.perf_counter(), git_commit(), select_device()
    glyphs = load_glyphs(cache_path=args.glyphs)
    if args.collective:
        c, task_reports = Collective.from_bytes(Path(args.collective).read_bytes()), []
    else:
        c, task_reports, _ = grow(glyphs, args)
        (out / "sizes_collective.safetensors").write_bytes(c.to_bytes())  # for reruns with --collective
    lg = Learngene.extract(c, "validated", k=K, validation=val)  # the service's default learngene
    default = default_parameters(lg.source_config, lg.layers, args.ways)
    budgets = [int(default * f) for f in args.budgets]
    print(f"learngene {lg.layers}: {lg.parameters:,} parameters; today's individual {default:,}; budgets {budgets}",
          flush=True)
    t0 = time.perf_counter()
    shrink = choose_shrink(c, lg, Learngene.whole(c), budgets, args, device)
    shrink_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = evaluate(glyphs, c, lg, budgets, shrink["chosen"], args, device)
    report = {
        "run": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "commit": commit, "mode": args.mode, "episodes": args.episodes, "tasks": args.tasks,
                "base_per_task": args.base_per_task, "validation_tasks": args.validation_tasks,
                "settings": args.settings, "budget_factors": args.budgets, "seed": args.seed,
                "torch_threads": torch.get_num_threads(), "collective_from": args.collective or "grown in this run"},
        "device": str(device), "seconds_total": time.perf_counter() - t_start,
        "seconds_size_curve": time.perf_counter() - t0, "seconds_shrink_choice": shrink_seconds,
        "collective": {"parameters": c.parameters, "widths": list(c.net.config.widths), "tasks": c.tasks_seen,
                       "classes": len(c.label_space), "held_back_classes": len(c.held_back_classes)},
        "learngene": {"layers": lg.layers, "parameters": lg.parameters, "method": lg.method},
        "default_individual_parameters": default, "budgets": budgets, "shrink": shrink, "rows": rows,
        "summary": summary(rows, args.budgets),
    }
    (out / "sizes.json").write_text(json.dumps(report, indent=2))
    plot(rows, args.settings, out / "sizes.png")
    print(table(report))
    print(f"\nwritten to {out / 'sizes.json'}, {out / 'sizes.png'}, {out / 'sizes_episodes.jsonl'}")
    return report


def summary(rows: list[dict], factors: list[float]) -> dict:
    """Per setting: does the learngene beat scratch at every budget, and smallest/default accuracy."""
    out = {}
    for ways, shots in sorted({(r["ways"], r["shots"]) for r in rows}):
        lg = {r["budget_factor"]: r for r in rows if (r["ways"], r["shots"], r["method"]) == (ways, shots, "learngene")}
        beats = {str(f): r["paired"]["scratch"]["mean_difference"] > 0 for f, r in lg.items()}
        entry = {"learngene_beats_scratch_at": beats, "at_every_budget": all(beats.values())}
        if 1.0 in lg:
            entry["smallest_over_default"] = lg[min(factors)]["accuracy_mean"] / lg[1.0]["accuracy_mean"]
        out[f"{ways}x{shots}"] = entry
    return out


def table(report: dict) -> str:
    s = report["shrink"]
    lines = [f"Collective {report['collective']['parameters']:,} parameters, learngene {report['learngene']['layers']} "
             f"({report['learngene']['parameters']:,}); today's individual {report['default_individual_parameters']:,}",
             "Shrink on base-class pseudo tasks: " + ", ".join(f"{k} {v:.3f}" for k, v in s["accuracy"].items())
             + f" → {s['chosen']}",
             "", "| setting | budget | method | parameters | accuracy | 95% CI | learngene − this (paired) | s/model |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lgr = next(x for x in report["rows"] if (x["ways"], x["shots"], x["budget_factor"], x["method"])
                   == (r["ways"], r["shots"], r["budget_factor"], "learngene"))
        d = lgr["paired"].get(r["method"])
        diff = paired_text(d, "–")
        lines.append(f"| {r['ways']}-way {r['shots']}-shot | {r['budget_factor']:g}× ({r['max_parameters']:,}) | "
                     f"{r['method']} | {r['parameters']:,} | {r['accuracy_mean']:.3f} | ±{r['accuracy_ci95']:.3f} | "
                     f"{diff} | {r['seconds_per_model']:.2f} |")
    for k, v in report["summary"].items():
        lines.append(f"{k}: learngene beats scratch at every budget: {v['at_every_budget']}; smallest/default "
                     f"accuracy {v.get('smallest_over_default', float('nan')):.3f}")
    lines.append(f"Total {report['seconds_total']:.0f}s on {report['device']} (size curve "
                 f"{report['seconds_size_curve']:.0f}s)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
