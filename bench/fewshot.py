"""Few-shot benchmark on the rendered glyph set: grow a collective, take learngenes, compare methods.

    python -m bench.fewshot            # full: 8 tasks, 30 target tasks per setting (~35 min on 2 cores)
    python -m bench.fewshot --quick    # the same protocol, small (~3 min)

1. Grow a `small` collective over sequential tasks from the base scripts; open-world scripts arrive in
   later tasks (unknown-class AUROC per task, accuracy matrix, gradient heatmap PNG).
2. Take learngenes by the gradient criterion and by validation, plus the ablations.
3. Evaluate within-script target tasks from the novel scripts: every method on the same episodes.
Prints a markdown table and writes var/bench/fewshot.json (+ gradient_heatmap.png).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from learngene import Collective, InputSpec, Learngene, TrainOptions, ValidationOptions, to_input
from learngene.baselines import linear_probe_accuracy, prototype_accuracy
from learngene.datasets import BASE_SCRIPTS, NOVEL_SCRIPTS, OPEN_WORLD_SCRIPTS, load_glyphs
from learngene.device import select_device
from learngene.individual import build_net, fit
from learngene.openworld import SCORES, auroc
from learngene.protocol import mean_ci, sample_episode
from learngene.training import accuracy, logits_of

SETTINGS = {"full": [(20, 1), (20, 5), (5, 5)], "quick": [(20, 1), (20, 5), (5, 5)]}
K = 3


def task_stream(glyphs, n_tasks: int, base_per_task: int | None, seed: int) -> list[list[int]]:
    """Class ids per task: base classes spread over all tasks, one open-world script per later task."""
    rng = np.random.default_rng(seed)
    base = rng.permutation(glyphs.classes_of(BASE_SCRIPTS))
    if base_per_task:
        base = base[: base_per_task * n_tasks]
    chunks = [list(c) for c in np.array_split(base, n_tasks)]
    open_scripts = [s for s in OPEN_WORLD_SCRIPTS if glyphs.classes_of([s])]
    first_open = max(1, n_tasks - len(open_scripts))
    for t, script in zip(range(first_open, n_tasks), open_scripts):
        classes = glyphs.classes_of([script])
        chunks[t] += list(classes[: base_per_task] if base_per_task else classes)
    return chunks


def grow(glyphs, args) -> tuple[Collective, list[dict]]:
    spec = InputSpec(channels=1, size=32)
    c = Collective.create(spec, preset="small", seed=args.seed)
    reports = []
    for t, classes in enumerate(task_stream(glyphs, args.tasks, args.base_per_task, args.seed)):
        ds = glyphs.to_task_dataset(classes)
        scripts = sorted({glyphs.class_script[i] for i in classes} & set(OPEN_WORLD_SCRIPTS))
        auroc_by_score = {}
        if c.tasks_seen and scripts:  # open-world scripts alone vs held-out known classes, per score
            new = [i for i, cid in enumerate(classes) if glyphs.class_script[cid] in scripts]
            images = ds.x[np.isin(ds.y, new)]
            auroc_by_score = {m: auroc(c.known_reference_scores(m), c.unknown_scores(images, m))
                              for m in SCORES}
        t0 = time.perf_counter()
        r = c.learn_task(ds, epochs=args.collective_epochs, name=f"task-{t + 1}")
        ow = r["open_world"] or {}
        reports.append({"task": t + 1, "classes": len(classes), "new_open_world_scripts": scripts,
                        "auroc": auroc_by_score.get(c.options.score), "auroc_by_score": auroc_by_score,
                        "auroc_all_new_classes": ow.get("auroc"), "new_flagged": ow.get("new_flagged"),
                        "known_flagged": ow.get("known_flagged"), "accuracy": r["accuracy"],
                        "widths": r["widths"], "seconds": time.perf_counter() - t0})
        print(f"task {t + 1}: {len(classes)} classes, acc {r['accuracy']:.3f}, open-world auroc {auroc_by_score}, "
              f"widths {r['widths']}, {reports[-1]['seconds']:.0f}s", flush=True)
    return c, reports


def heatmap(lg: Learngene, path: Path, chosen: dict[str, list[int]]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = np.array(lg.grad_stats["share"])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 4), gridspec_kw={"width_ratios": [4, 1]})
    im = ax.imshow(table, aspect="auto", cmap="viridis")
    ax.set_xlabel("task"); ax.set_ylabel("conv layer")
    ax.set_xticks(range(table.shape[1]), [str(i + 1) for i in range(table.shape[1])])
    ax.set_yticks(range(table.shape[0]), [f"conv{i}" for i in range(table.shape[0])])
    ax.set_title("share of |dL/dW| > tau")
    fig.colorbar(im, ax=ax)
    ax2.barh(range(len(lg.scores)), lg.scores, color="grey")
    for name, layers, colour in [("gradient", chosen.get("gradient"), "tab:red"),
                                 ("validated", chosen.get("validated"), "tab:blue")]:
        for i in layers or []:
            ax2.barh(i, lg.scores[i], color=colour, alpha=0.6, label=name if i == layers[0] else None)
    ax2.invert_yaxis(); ax.set_ylim(table.shape[0] - 0.5, -0.5)
    ax2.set_xlabel("stability score (low = stable)"); ax2.set_yticks([])
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def matmul_flops(seconds: float = 1.0) -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * 1024**3 * n / (time.perf_counter() - t0)


def train_flops_per_sample(net, spec: InputSpec) -> float:
    x = torch.randn(2, spec.channels, spec.size, spec.size)
    with FlopCounterMode(display=False) as counter:
        net(x).sum().backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def evaluate(glyphs, c: Collective, genes: dict[str, Learngene], args) -> list[dict]:
    device = select_device()
    spec = c.spec
    labels = glyphs.labels
    whole = Learngene.whole(c)
    default = genes["validated"] if "validated" in genes else genes["gradient"]
    num_layers = len(c.net.blocks)
    rows = []
    for ways, shots in SETTINGS[args.mode]:
        scripts = [s for s in NOVEL_SCRIPTS if len(glyphs.classes_of([s])) >= ways]
        results: dict[str, list[float]] = {}
        seconds: dict[str, float] = {}
        params: dict[str, int] = {}
        flops: dict[str, float] = {}
        for episode in range(args.episodes):
            seed = 1000 * ways + 100 * shots + episode
            script = scripts[episode % len(scripts)]
            s_idx, q_idx, chosen = sample_episode(labels, glyphs.classes_of([script]), ways, shots, seed)
            remap = {cid: i for i, cid in enumerate(chosen)}
            sx, qx = to_input(glyphs.x[s_idx], spec), to_input(glyphs.x[q_idx], spec)
            sy = torch.tensor([remap[int(v)] for v in labels[s_idx]])
            qy = torch.tensor([remap[int(v)] for v in labels[q_idx]])
            rng = np.random.default_rng(seed)
            random_layers = sorted(rng.choice(num_layers, K, replace=False).tolist())
            trained = {  # method → (learngene, inherited layers or None for scratch)
                "learngene (gradient)": (genes["gradient"], genes["gradient"].layers),
                "learngene (validated)": (genes.get("validated", genes["gradient"]),
                                          genes.get("validated", genes["gradient"]).layers),
                "scratch": (default, None),
                "shallow layers (ablation)": (whole, list(range(K))),
                "deep layers (paper's choice)": (whole, list(range(num_layers - K, num_layers))),
                "random layers (ablation)": (whole, random_layers),
                "fine-tune whole collective": (whole, list(range(num_layers))),
            }
            done: dict[tuple, tuple[float, float]] = {}  # same layers, same seed → same result
            for method, (lg, layers) in trained.items():
                init = "scratch" if layers is None else "learngene"
                inherit = layers if layers is not None else default.layers
                net = build_net(lg, ways, init, layers=inherit, generator_seed=seed)
                if episode == 0:
                    params[method] = sum(p.numel() for p in net.parameters())
                    flops[method] = train_flops_per_sample(net, spec)
                key = (init, tuple(inherit))
                if key not in done:
                    t0 = time.perf_counter()
                    fit(net, sx, sy, TrainOptions(epochs=args.individual_epochs, seed=seed), device=device)
                    done[key] = (accuracy(logits_of(net, qx, device), qy), time.perf_counter() - t0)
                acc, secs = done[key]
                results.setdefault(method, []).append(acc)
                seconds[method] = seconds.get(method, 0.0) + secs
            for method, fn in [("prototypes on collective", prototype_accuracy),
                               ("linear probe on collective", linear_probe_accuracy)]:
                t0 = time.perf_counter()
                results.setdefault(method, []).append(fn(c.net, sx, sy, qx, qy))
                seconds[method] = seconds.get(method, 0.0) + time.perf_counter() - t0
                params[method] = sum(p.numel() for b in c.net.blocks for p in b.parameters()) + ways * c.net.config.widths[-1]
        steps = args.individual_epochs * max(4, -(-ways * shots // 32))
        batch = min(32, ways * shots)
        for method, accs in results.items():
            m, ci = mean_ci(accs)
            secs = seconds.get(method, 0.0) / args.episodes
            row = {"method": method, "ways": ways, "shots": shots, "accuracy_mean": m, "accuracy_ci95": ci,
                   "parameters": params.get(method, 0), "seconds_per_task": secs, "episodes": len(accs),
                   "accuracies": accs}  # per episode, same seeds for every method: paired comparisons
            if method in flops and secs > 0:
                row["train_flops_per_task"] = flops[method] * steps * batch
                row["train_flops_per_second"] = row["train_flops_per_task"] / secs
            rows.append(row)
        print(f"{ways}-way {shots}-shot done", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="var/bench")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--glyphs", default="var/data/glyphs.npz", help="glyph set cache (rendered on first use)")
    args = p.parse_args(argv)
    args.mode = "quick" if args.quick else "full"
    if args.quick:
        args.tasks, args.base_per_task, args.collective_epochs = 3, 30, 4
        args.episodes, args.individual_epochs = 3, 8
        val = ValidationOptions(tasks=1, ways=5, shots=2, epochs=5)
    else:
        args.tasks, args.base_per_task, args.collective_epochs = 8, 80, 5
        args.episodes, args.individual_epochs = 30, 20
        val = ValidationOptions()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    t_start = time.perf_counter()
    glyphs = load_glyphs(cache_path=args.glyphs)
    peak_flops = matmul_flops()
    c, task_reports = grow(glyphs, args)
    t0 = time.perf_counter()
    genes = {"gradient": Learngene.extract(c, "gradient", k=K)}
    genes["validated"] = Learngene.extract(c, "validated", k=K, validation=val)
    selection_seconds = time.perf_counter() - t0
    heatmap(genes["validated"], out / "gradient_heatmap.png",
            {"gradient": genes["gradient"].layers, "validated": genes["validated"].layers})
    rows = evaluate(glyphs, c, genes, args)
    for r in rows:
        if "train_flops_per_second" in r:
            r["throughput_vs_matmul"] = r["train_flops_per_second"] / peak_flops
    info = c.info()
    report = {
        "mode": args.mode, "device": str(select_device()), "seconds_total": time.perf_counter() - t_start,
        "matmul_flops_per_second": peak_flops,
        "collective": {"parameters": c.parameters, "widths": info["widths"], "tasks": len(task_reports),
                       "classes": len(c.label_space), "accuracy_matrix": info["accuracy_matrix"],
                       "average_accuracy": info["average_accuracy"], "forgetting": info["forgetting"]},
        "chosen_layers": {"gradient": genes["gradient"].layers, "validated": genes["validated"].layers},
        "stability_scores": genes["gradient"].scores,
        "validation_candidates": genes["validated"].candidates, "selection_seconds": selection_seconds,
        "unknown_score": c.options.score,
        "unknown_auroc": [{"task": r["task"], "scripts": r["new_open_world_scripts"], "auroc": r["auroc"],
                           "by_score": r["auroc_by_score"]} for r in task_reports if r["auroc"] is not None],
        "tasks": task_reports,
        "rows": rows,
    }
    (out / "fewshot.json").write_text(json.dumps(report, indent=2))
    print_table(report)
    return report


def print_table(report: dict) -> None:
    col = report["collective"]
    print(f"\nCollective: {col['parameters']:,} parameters, widths {col['widths']}, {col['classes']} classes, "
          f"average accuracy {col['average_accuracy']:.3f}, forgetting {col['forgetting']}")
    print(f"Chosen layers: gradient {report['chosen_layers']['gradient']}, validated {report['chosen_layers']['validated']}")
    print(f"Unknown-class AUROC of the open-world scripts ({report['unknown_score']}; energy, max_softmax):")
    for a in report["unknown_auroc"]:
        other = ", ".join(f"{a['by_score'][m]:.3f}" for m in ("energy", "max_softmax"))
        print(f"  task {a['task']} {'+'.join(a['scripts'])}: {a['auroc']:.3f} ({other})")
    print("\n| setting | method | accuracy | 95% CI | parameters | s/task | throughput/matmul |")
    print("|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        tp = f"{r['throughput_vs_matmul']:.3f}" if "throughput_vs_matmul" in r else "-"
        print(f"| {r['ways']}-way {r['shots']}-shot | {r['method']} | {r['accuracy_mean']:.3f} | "
              f"±{r['accuracy_ci95']:.3f} | {r['parameters']:,} | {r['seconds_per_task']:.2f} | {tp} |")
    print(f"\nTotal {report['seconds_total']:.0f}s on {report['device']}; "
          f"matmul {report['matmul_flops_per_second'] / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
