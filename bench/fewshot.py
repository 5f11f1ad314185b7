"""Few-shot benchmark on the rendered glyph set: grow a collective, take learngenes, compare methods.

    python -m bench.fewshot            # full: 8 tasks, 20 target tasks per setting (<= 60 min on 2 cores)
    python -m bench.fewshot --quick    # the same protocol, small (<= 4 min)

1. Grow a collective (preset `small`, or `--preset`) over sequential tasks from the base scripts with the
   service's defaults; open-world scripts arrive in later tasks (unknown-class AUROC per task, accuracy
   matrix, heatmap PNG).
   Beside it, the joint reference: the final architecture trained on the same samples at once, for the
   same number of sample passes; its accuracy on the same held-out samples is the collective's ceiling.
2. Take learngenes by the gradient criterion and by validation (every block length and position, pseudo
   tasks from held-back base classes), plus the layer ablations.
3. Evaluate within-script target tasks from the novel scripts: every method on the same episodes, paired
   differences, parameters against the whole collective and against its conv trunk.
Nothing here is tuned on the target episodes: every default is the library's (= the service's).
Prints markdown tables and writes var/bench/fewshot.json (+ gradient_heatmap.png).
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

from bench import git_commit
from learngene import Collective, CollectiveOptions, InputSpec, Learngene, TrainOptions, ValidationOptions, to_input
from learngene.baselines import prototype_accuracy, raw_pixel_accuracy, train_joint
from learngene.datasets import BASE_SCRIPTS, NOVEL_SCRIPTS, OPEN_WORLD_SCRIPTS, load_glyphs
from learngene.device import select_device
from learngene.individual import choose_init, make_net
from learngene.model import PRESETS, NetConfig, count_parameters
from learngene.openworld import SCORES, auroc
from learngene.protocol import mean_ci, paired, sample_episode
from learngene.training import accuracy, from_uint8, logits_of

K = 3  # the gradient criterion's block length, and the ablations'
DEFAULT = "learngene (validated)"  # the learngene individual the service builds (selection "auto" = validated)
AUTO = "auto (service default)"  # what POST /individuals returns with no init field
NO_DISTILL = "learngene (no distillation)"  # the default learngene individual without its distillation term
PROBE = "linear probe on collective"  # init=probe (the service's probe, round one's settings)
RAW_PIXELS = "nearest class mean on raw pixels"  # no net: a measure of the episodes' difficulty


def task_stream(glyphs, n_tasks: int, base_per_task: int | None, seed: int,
                open_world: bool = True) -> list[list[int]]:
    """Class ids per task: base classes spread over all tasks, one open-world script per later task (unless
    `open_world` is False: then the open-world scripts stay unseen, bench/auto_rule.py's novel-script pool)."""
    rng = np.random.default_rng(seed)
    base = rng.permutation(glyphs.classes_of(BASE_SCRIPTS))
    if base_per_task:
        base = base[: base_per_task * n_tasks]
    chunks = [list(c) for c in np.array_split(base, n_tasks)]
    open_scripts = [s for s in OPEN_WORLD_SCRIPTS if glyphs.classes_of([s])] if open_world else []
    first_open = max(1, n_tasks - len(open_scripts))
    for t, script in zip(range(first_open, n_tasks), open_scripts):
        classes = glyphs.classes_of([script])
        chunks[t] += list(classes[: base_per_task] if base_per_task else classes)
    return chunks


def stream_of(glyphs, args) -> list[list[int]]:
    """`task_stream` with a run's settings (args.tasks, base_per_task, seed; open_world if set)."""
    return task_stream(glyphs, args.tasks, args.base_per_task, args.seed, getattr(args, "open_world", True))


def grow(glyphs, args) -> tuple[Collective, list[dict], dict]:
    spec = InputSpec(channels=1, size=32)
    options = dict(getattr(args, "collective_options", {}))
    c = Collective.create(spec, preset=options.pop("preset", "small"), seed=args.seed,
                          epochs=args.collective_max_epochs, **options)
    reports, seen = [], {"x": [], "names": [], "samples": 0}
    for t, classes in enumerate(stream_of(glyphs, args)):
        ds = glyphs.to_task_dataset(classes)
        scripts = sorted({glyphs.class_script[i] for i in classes} & set(OPEN_WORLD_SCRIPTS))
        auroc_by_score = {}
        if c.tasks_seen and scripts:  # open-world scripts alone vs held-out known classes, per score
            new = [i for i, cid in enumerate(classes) if glyphs.class_script[cid] in scripts]
            images = ds.x[np.isin(ds.y, new)]
            auroc_by_score = {m: auroc(c.known_reference_scores(m), c.unknown_scores(images, m)) for m in SCORES}
        t0 = time.perf_counter()
        r = c.learn_task(ds, name=f"task-{t + 1}")
        # What the collective trained on (not its held-out samples, not held-back classes): the joint reference's data.
        train_mask = np.ones(len(ds.y), bool)
        train_mask[r["heldout_index"]] = False
        train_mask &= np.array([ds.class_names[k] not in set(r["held_back_classes"]) for k in ds.y])
        seen["x"].append(to_input(ds.x[train_mask], spec))
        seen["names"] += [ds.class_names[k] for k in ds.y[train_mask]]
        seen["samples"] += r["history"][-1]["steps"] * c.options.batch_size
        ow = r["open_world"] or {}
        reports.append({"task": t + 1, "classes": len(classes), "held_back": len(r["held_back_classes"]),
                        "new_open_world_scripts": scripts, "auroc": auroc_by_score.get(c.options.score),
                        "auroc_by_score": auroc_by_score, "auroc_all_new_classes": ow.get("auroc"),
                        "accuracy": r["accuracy"], "epochs": r["epochs"], "widths": r["widths"],
                        "seconds": time.perf_counter() - t0})
        print(f"task {t + 1}: {len(classes)} classes ({len(r['held_back_classes'])} held back), acc "
              f"{r['accuracy']:.3f} after {r['epochs']} epochs, auroc {auroc_by_score.get('knn')}, "
              f"{reports[-1]['seconds']:.0f}s", flush=True)
    return c, reports, seen


def joint_reference(c: Collective, seen: dict, args) -> tuple[torch.nn.Module, dict]:
    """The collective's final architecture trained on all its training samples at once, same sample passes."""
    index = {n: i for i, n in enumerate(c.label_space)}
    x, y = torch.cat(seen["x"]), torch.tensor([index[n] for n in seen["names"]])
    cfg = NetConfig.from_dict(c.net.config.to_dict())
    steps = max(1, seen["samples"] // c.options.batch_size)
    t0 = time.perf_counter()
    net = train_joint(x, y, cfg, steps, c.options.batch_size, c.options.lr, c.options.weight_decay, args.seed)
    logits = logits_of(net, from_uint8(c.heldout_x), select_device())
    per_task = [accuracy(logits[c.heldout_task == j], c.heldout_y[c.heldout_task == j]) for j in range(c.tasks_seen)]
    info = {"average_accuracy": float(np.mean(per_task)), "accuracy_per_task": per_task, "steps": steps,
            "samples": seen["samples"], "seconds": time.perf_counter() - t0, "parameters": count_parameters(net)}
    print(f"joint reference: average accuracy {info['average_accuracy']:.3f} ({steps} steps, "
          f"{info['seconds']:.0f}s)", flush=True)
    return net, info


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


def target_seed(ways: int, shots: int, episode: int) -> int:
    """The seed of a target episode: its sampling, and the training of every net scored on it."""
    return 1000 * ways + 100 * shots + episode


def target_episode(glyphs, spec: InputSpec, ways: int, shots: int, episode: int) -> tuple[torch.Tensor, ...]:
    """Target episode `episode` of a setting: (support x, support y, query x, query y), labels 0..ways-1.

    Seeded by setting and index alone, so every run (and bench/targets.py) scores the same tasks; its classes come
    from one novel script, taken in turn, and its query is the other fonts of those classes."""
    scripts = [s for s in NOVEL_SCRIPTS if len(glyphs.classes_of([s])) >= ways]
    script = scripts[episode % len(scripts)]
    s_idx, q_idx, chosen = sample_episode(glyphs.labels, glyphs.classes_of([script]), ways, shots,
                                          target_seed(ways, shots, episode))
    remap = {cid: i for i, cid in enumerate(chosen)}
    return (to_input(glyphs.x[s_idx], spec), torch.tensor([remap[int(v)] for v in glyphs.labels[s_idx]]),
            to_input(glyphs.x[q_idx], spec), torch.tensor([remap[int(v)] for v in glyphs.labels[q_idx]]))


def evaluate(glyphs, c: Collective, genes: dict[str, Learngene], joint_net, args) -> list[dict]:
    device = select_device()
    spec = c.spec
    whole = Learngene.whole(c)
    joint = Learngene.whole(SimpleNamespace(net=joint_net, spec=spec, tasks_seen=c.tasks_seen))
    default = genes["validated"]
    num_layers = len(c.net.blocks)
    rows = []
    for ways, shots in args.settings:
        results: dict[str, list[float]] = {}
        seconds: dict[str, float] = {}
        params: dict[str, int] = {}
        choices: list[str] = []
        for episode in range(args.episodes):
            seed = target_seed(ways, shots, episode)
            sx, sy, qx, qy = target_episode(glyphs, spec, ways, shots, episode)
            random_layers = sorted(np.random.default_rng(seed).choice(num_layers, K, replace=False).tolist())
            trained = {  # method → (init, learngene, trunk, inherited layers or None for the learngene's own)
                DEFAULT: ("learngene", default, whole, None),  # the trunk: the instant model it distils
                "learngene (gradient)": ("learngene", genes["gradient"], whole, None),
                NO_DISTILL: ("learngene", default, None, None),  # no trunk, no teacher: the recipe before it
                "scratch": ("scratch", default, None, None),
                "instant": ("instant", default, whole, None),
                PROBE: ("probe", default, whole, None),  # init=probe: a linear head on the frozen trunk
                "shallow layers (ablation)": ("learngene", whole, None, list(range(K))),
                "deep layers (paper's choice)": ("learngene", whole, None, list(range(num_layers - K, num_layers))),
                "random layers (ablation)": ("learngene", whole, None, random_layers),
                "fine-tune whole collective": ("learngene", whole, None, list(range(num_layers))),
                "joint reference": ("learngene", joint, None, list(range(num_layers))),
            }
            opts = TrainOptions(seed=seed)
            done: dict[tuple, tuple[float, float, int]] = {}  # same net, same seed → same result
            for method, (init, lg, trunk, layers) in trained.items():
                key = (init, id(lg), id(trunk), tuple(lg.layers if layers is None else layers))
                if key not in done:
                    t0 = time.perf_counter()
                    net, _, _ = make_net(init, lg, trunk, sx, sy, ways, opts, layers, device)
                    done[key] = (accuracy(logits_of(net, qx, device), qy), time.perf_counter() - t0,
                                 count_parameters(net))
                acc, secs, params[method] = done[key]
                results.setdefault(method, []).append(acc)
                seconds[method] = seconds.get(method, 0.0) + secs
            t0 = time.perf_counter()  # auto: the choice, then the chosen net (trained above with the same seed)
            pick = choose_init(default, whole, sx, sy, ways, opts, device)["init"]
            choices.append(pick)
            method_of = {"learngene": DEFAULT, "scratch": "scratch", "instant": "instant", "probe": PROBE}[pick]
            results.setdefault(AUTO, []).append(results[method_of][-1])
            seconds[AUTO] = seconds.get(AUTO, 0.0) + time.perf_counter() - t0 + next(
                v[1] for k, v in done.items() if k[0] == pick)
            params[AUTO] = max(params.get(AUTO, 0), params[method_of])
            for method, fn, net in [("prototypes on collective", prototype_accuracy, c.net),
                                    ("prototypes on joint reference", prototype_accuracy, joint_net)]:
                t0 = time.perf_counter()
                results.setdefault(method, []).append(fn(net, sx, sy, qx, qy))
                seconds[method] = seconds.get(method, 0.0) + time.perf_counter() - t0
                params[method] = sum(p.numel() for b in net.blocks for p in b.parameters()) + ways * net.feature_dim
            # No net at all: how hard the episodes are (DESIGN's reference check read 0.58 / 0.77 at 20-way 1 / 5-shot).
            results.setdefault(RAW_PIXELS, []).append(raw_pixel_accuracy(sx, sy, qx, qy))
            params[RAW_PIXELS] = ways * sx[0].numel()
            with open(Path(args.out) / "episodes.jsonl", "a") as f:  # kept as it goes: a crash loses no episode
                f.write(json.dumps({"ways": ways, "shots": shots, "episode": episode, "auto": pick,
                                    "accuracies": {m: v[-1] for m, v in results.items()}}) + "\n")
            print(f"  {ways}-way {shots}-shot episode {episode + 1}: " + ", ".join(
                f"{m.split(' (')[0][:12]} {v[-1]:.2f}" for m, v in results.items()), flush=True)
        trunk_params = sum(p.numel() for b in c.net.blocks for p in b.parameters())
        for method, accs in results.items():
            m, ci = mean_ci(accs)
            row = {"method": method, "ways": ways, "shots": shots, "accuracy_mean": m, "accuracy_ci95": ci,
                   "parameters": params.get(method, 0), "of_collective": params.get(method, 0) / c.parameters,
                   "of_trunk": params.get(method, 0) / trunk_params,
                   "seconds_per_task": seconds.get(method, 0.0) / args.episodes, "episodes": len(accs),
                   "accuracies": accs}  # per episode, same seeds for every method: paired comparisons
            if method == AUTO:
                row["choices"] = {k: choices.count(k) for k in sorted(set(choices))}
            for other in ("scratch", "fine-tune whole collective", "joint reference", "instant", NO_DISTILL):
                if method in (DEFAULT, AUTO) and other != method:
                    row.setdefault("paired", {})[other] = paired(accs, results[other])
            rows.append(row)
        print(f"{ways}-way {shots}-shot done", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="var/bench")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, help="target tasks per setting (default 20, quick 2)")
    p.add_argument("--tasks", type=int, help="collective tasks (default 8, quick 3)")
    p.add_argument("--base-per-task", type=int, help="base classes per task (default 80, quick 20)")
    p.add_argument("--validation-tasks", type=int, help="pseudo tasks per candidate block (default 3, quick 1)")
    p.add_argument("--settings", default="20x1,20x5,5x5", help="ways x shots of the target tasks")
    p.add_argument("--glyphs", default="var/data/glyphs.npz", help="glyph set cache (rendered on first use)")
    p.add_argument("--preset", default="small", choices=sorted(PRESETS),
                   help="the collective's preset (the service's default: small; `wide` is 3.3 x the CPU time)")
    args = p.parse_args(argv)
    args.collective_options = {"preset": args.preset}
    args.mode = "quick" if args.quick else "full"
    args.settings = [tuple(int(v) for v in s.split("x")) for s in args.settings.split(",")]
    if args.quick:  # smaller everything; the recipes are the defaults
        defaults = {"tasks": 3, "base_per_task": 20, "episodes": 2, "validation_tasks": 1}
        args.collective_max_epochs, val = 3, ValidationOptions(tasks=1, ways=5)
    else:
        defaults = {"tasks": 8, "base_per_task": 80, "episodes": 20, "validation_tasks": 3}
        args.collective_max_epochs, val = CollectiveOptions().epochs, ValidationOptions()
    for k, v in defaults.items():
        setattr(args, k, getattr(args, k) or v)
    val.tasks = args.validation_tasks
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    t_start, commit = time.perf_counter(), git_commit()  # the code that runs, not what HEAD is at the end
    glyphs = load_glyphs(cache_path=args.glyphs)
    c, task_reports, seen = grow(glyphs, args)
    joint_net, joint_info = joint_reference(c, seen, args)
    t0 = time.perf_counter()
    genes = {"gradient": Learngene.extract(c, "gradient", k=K)}
    genes["validated"] = Learngene.extract(c, "validated", k=K, validation=val)
    selection_seconds = time.perf_counter() - t0
    print(f"learngenes: gradient {genes['gradient'].layers}, validated {genes['validated'].layers} "
          f"({selection_seconds:.0f}s)", flush=True)
    heatmap(genes["validated"], out / "gradient_heatmap.png",
            {"gradient": genes["gradient"].layers, "validated": genes["validated"].layers})
    rows = evaluate(glyphs, c, genes, joint_net, args)
    info = c.info()
    report = {
        "run": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "commit": commit, "mode": args.mode, "episodes": args.episodes, "tasks": args.tasks,
                "base_per_task": args.base_per_task, "validation_tasks": args.validation_tasks,
                "settings": args.settings, "preset": args.preset},
        "mode": args.mode, "device": str(select_device()), "seconds_total": time.perf_counter() - t_start,
        "collective": {"parameters": c.parameters, "widths": info["widths"], "tasks": len(task_reports),
                       "classes": len(c.label_space), "held_back_classes": len(c.held_back_classes),
                       "trunk_parameters": sum(p.numel() for b in c.net.blocks for p in b.parameters()),
                       "accuracy_matrix": info["accuracy_matrix"], "average_accuracy": info["average_accuracy"],
                       "forgetting": info["forgetting"]},
        "joint_reference": joint_info,
        "chosen_layers": {"gradient": genes["gradient"].layers, "validated": genes["validated"].layers},
        "stability_scores": genes["gradient"].scores,
        "validation_candidates": genes["validated"].candidates, "strategies": genes["validated"].strategies,
        "validation_pool": genes["validated"].source.get("validation_pool"), "selection_seconds": selection_seconds,
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
    col, joint = report["collective"], report["joint_reference"]
    print(f"\nCollective: {col['parameters']:,} parameters (trunk {col['trunk_parameters']:,}), widths "
          f"{col['widths']}, {col['classes']} classes ({col['held_back_classes']} held back), average accuracy "
          f"{col['average_accuracy']:.3f}, forgetting {col['forgetting']:.3f}; joint reference "
          f"{joint['average_accuracy']:.3f} (ratio {col['average_accuracy'] / joint['average_accuracy']:.2f})")
    print(f"Chosen layers: gradient {report['chosen_layers']['gradient']}, validated "
          f"{report['chosen_layers']['validated']} (pool: {report['validation_pool']})")
    for a in report["unknown_auroc"]:
        other = ", ".join(f"{m} {a['by_score'][m]:.3f}" for m in ("energy", "max_softmax"))
        print(f"  unknown AUROC task {a['task']} {'+'.join(a['scripts'])}: knn {a['auroc']:.3f} ({other})")
    print("\n| setting | method | accuracy | 95% CI | parameters | of collective | of trunk | s/task |")
    print("|---|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        print(f"| {r['ways']}-way {r['shots']}-shot | {r['method']} | {r['accuracy_mean']:.3f} | "
              f"±{r['accuracy_ci95']:.3f} | {r['parameters']:,} | {r['of_collective']:.2f} | {r['of_trunk']:.2f} | "
              f"{r['seconds_per_task']:.2f} |")
    print("\nPaired differences (same episodes), mean [95% interval], wins/losses:")
    for r in report["rows"]:
        for other, d in r.get("paired", {}).items():
            print(f"  {r['ways']}-way {r['shots']}-shot {r['method']} − {other}: {d['mean_difference']:+.3f} "
                  f"[{d['low']:+.3f}, {d['high']:+.3f}] {d['wins']}/{d['losses']}")
        if "choices" in r:
            print(f"  {r['ways']}-way {r['shots']}-shot auto chose {r['choices']}")
    print(f"\nTotal {report['seconds_total']:.0f}s on {report['device']}")


if __name__ == "__main__":
    main()
