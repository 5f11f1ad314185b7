"""What the instant model's prototypes could be made of, scored on BASE data (bench/recipe.py's pools).

    python -m bench.prototypes --out var/bench/recipe    # reuses the collective bench.recipe cached there

The instant individual is the collective's trunk with a cosine head on the support's class means of its
last pooled features. Known tricks on ReLU features that need no training: centring (on the support's or
the base exemplars' mean; SimpleShot, Wang et al. 2019), a power transform (Hu et al. 2021), features of
several blocks, prototypes from augmented support views, test-time augmentation of the queries. Each is
scored on the same pseudo tasks (held-back classes, unseen base-script classes), paired against the plain
head. No target episode is looked at. Prints a table and writes <out>/prototypes.json.
"""
from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench import git_commit, paired_text, write_report
from bench.recipe import collective_for, unseen_tasks
from learngene import CollectiveOptions, Learngene, TrainOptions
from learngene.augment import augment
from learngene.datasets import load_glyphs
from learngene.device import select_device
from learngene.individual import make_net
from learngene.protocol import mean_ci, paired
from learngene.selection import pseudo_pool, pseudo_tasks
from learngene.training import from_uint8

# name → (blocks whose pooled features are used (negative: from the top), centring, power, support views, query views)
VARIANTS = {
    "plain (the instant model)": ([-1], None, 1.0, 0, 0),
    "centred on the support mean": ([-1], "support", 1.0, 0, 0),
    "centred on the base mean": ([-1], "base", 1.0, 0, 0),
    "power 0.5": ([-1], None, 0.5, 0, 0),
    "power 0.5, centred on the base mean": ([-1], "base", 0.5, 0, 0),
    "last two blocks": ([-2, -1], None, 1.0, 0, 0),
    "every block": (None, None, 1.0, 0, 0),
    "16 augmented support views": ([-1], None, 1.0, 16, 0),
    "16 support views, 4 query views": ([-1], None, 1.0, 16, 4),
}


@torch.no_grad()
def block_features(net, x: torch.Tensor) -> list[torch.Tensor]:
    """Globally pooled output of every conv block: a list of (N, width) tensors."""
    net.eval()
    device = next(net.parameters()).device
    out = []
    for i in range(0, len(x), 512):
        h, per_block = x[i : i + 512].to(device), []
        for block in net.blocks:
            h = block(h)
            per_block.append(h.mean(dim=(2, 3)).float().cpu())
        out.append(per_block)
    return [torch.cat([b[k] for b in out]) for k in range(len(net.blocks))]


def embed(net, x, blocks, power, base_mean, views, gen, strength):
    """(N, D) unit embeddings: the mean over `views` extra augmented copies plus the image itself."""
    copies = [x] + [augment(x, gen, strength) for _ in range(views)]
    per_copy = []
    for v in copies:
        feats = block_features(net, v)
        chosen = range(len(feats)) if blocks is None else [len(feats) + b for b in blocks]
        f = torch.cat([F.normalize(feats[k].clamp_min(0) ** power, dim=1) for k in chosen], 1)
        per_copy.append(f - base_mean if base_mean is not None else f)
    return torch.stack(per_copy).mean(0)


def score(net, task, variant, base_means, seed) -> float:
    sx, sy, qx, qy, ways = task
    blocks, centre, power, s_views, q_views = variant
    gen = torch.Generator().manual_seed(seed)
    base = base_means[power] if centre == "base" and blocks == [-1] else None
    fs = embed(net, sx, blocks, power, base, s_views, gen, 1.0)
    fq = embed(net, qx, blocks, power, base, q_views, gen, 0.5)
    if centre == "support":
        mu = fs.mean(0)
        fs, fq = fs - mu, fq - mu
    protos = torch.stack([fs[sy == c].mean(0) for c in range(ways)])
    logits = F.normalize(fq, dim=1) @ F.normalize(protos, dim=1).T
    return float((logits.argmax(1) == torch.as_tensor(qy)).float().mean())


def table(report: dict) -> str:
    lines = ["", "| tasks | variant | accuracy | − plain (paired) |", "|---|---|---|---|"]
    lines += [f"| {r['pool']} {r['ways']}-way {r['shots']}-shot | {r['variant']} | {r['accuracy_mean']:.3f} "
              f"±{r['accuracy_ci95']:.3f} | {paired_text(r['paired_vs_plain'])} |" for r in report["rows"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="var/bench/recipe", help="bench.recipe's folder (its collective is reused)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", type=int, default=5)
    p.add_argument("--base-per-task", type=int, default=60)
    p.add_argument("--pseudo-tasks", type=int, default=30)
    p.add_argument("--settings", default="20x1,20x5,5x5")
    p.add_argument("--glyphs", default="var/data/glyphs.npz")
    args = p.parse_args(argv)
    args.quick, args.collective_options = False, {}
    args.collective_max_epochs = CollectiveOptions().epochs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start, device = time.perf_counter(), select_device()
    glyphs = load_glyphs(cache_path=args.glyphs)
    c, grown = collective_for(glyphs, args)
    whole = Learngene.whole(c)
    x_all, y_all, _ = pseudo_pool(c)
    net = make_net("instant", whole, whole, from_uint8(x_all[:2]), torch.zeros(2, dtype=torch.long), 1,
                   TrainOptions(), device=device)[0]
    memory = block_features(net, from_uint8(c.memory_x))[-1]  # the base exemplars' last features
    base_means = {pw: F.normalize(memory.clamp_min(0) ** pw, dim=1).mean(0) for pw in (1.0, 0.5)}
    rows = []
    for pool_name in ("held-back", "unseen"):
        for setting in args.settings.split(","):
            ways, shots = (int(v) for v in setting.split("x"))
            seed = args.seed + 100 * shots + ways
            tasks = pseudo_tasks(x_all, y_all, ways, shots, args.pseudo_tasks, seed) if pool_name == "held-back" \
                else unseen_tasks(glyphs, c, args, ways, shots, args.pseudo_tasks, seed)
            accs = {n: [score(net, t, v, base_means, i) for i, t in enumerate(tasks)] for n, v in VARIANTS.items()}
            reference = next(iter(VARIANTS))
            for n, a in accs.items():
                m, ci = mean_ci(a)
                rows.append({"pool": pool_name, "ways": ways, "shots": shots, "variant": n, "accuracy_mean": m,
                             "accuracy_ci95": ci, "accuracies": a,
                             "paired_vs_plain": paired(a, accs[reference]) if n != reference else None})
            print(f"{pool_name} {ways}-way {shots}-shot done", flush=True)
    report = {"run": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      "commit": git_commit(), "pseudo_tasks": args.pseudo_tasks},
              "collective": {"parameters": c.parameters, **grown}, "rows": rows,
              "seconds_total": time.perf_counter() - t_start}
    write_report(report, out / "prototypes.json", table)
    return report


if __name__ == "__main__":
    main()
