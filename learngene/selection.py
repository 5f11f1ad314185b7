"""Which layers of the collective make the learngene: the gradient criterion and the validated choice.

- `gradient` (the paper's criterion, automated): the contiguous block of K layers whose gradient
  statistics stayed lowest and steadiest across tasks (`gradstats.stability_scores`).
- `validated` (the authors' 2023 follow-up, extended to every length and position): every prefix block
  [0..j] and every contiguous K-block whose individual fits the parameter cap is tried on pseudo target
  tasks built from classes the
  collective never trained on (the classes each task held back); individuals are built from each block
  with the individual's own recipe and the best-scoring block wins. The same pseudo tasks, at one shot,
  also score the learngene individual against scratch and the instant model: `init="auto"` reads that
  evidence when a support has a single shot per class.

    gene = extract_learngene(collective, method="validated")
    gene.layers, gene.candidates, gene.strategies
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from .genes import Learngene
from .gradstats import candidate_blocks, choose_block, stability_scores
from .individual import TrainOptions, individual_config, make_net, paired_margins
from .model import ConvNet, count_parameters
from .training import ShouldStop, accuracy, check_stop, from_uint8, logits_of

METHODS = ("auto", "gradient", "validated")
# What "auto" means; set from the benchmark's results (docs/benchmark.md, "Which selection is the default").
DEFAULT_METHOD = "validated"


@dataclass
class ValidationOptions:
    tasks: int = 3  # pseudo target tasks per candidate block
    ways: int = 10
    shots: int = 2
    max_fraction: float = 0.5  # blocks whose individual exceeds this share of the collective are skipped
    evidence_tasks: int = 10  # one-shot pseudo tasks scoring learngene / scratch / instant for init="auto"
    seed: int = 0


def all_blocks(num_layers: int, k: int = 3) -> list[list[int]]:
    """The candidates: the prefix [0..j] of every length, and the contiguous k-blocks at every position.

    Prefixes cover every length where the first-round benchmark found the best blocks (the lowest
    layers); the k-blocks cover every position, the paper's deep choice among them. All 21 blocks of a
    6-layer net cost 2.3 times as much validation as these 9."""
    prefixes = [list(range(j + 1)) for j in range(num_layers)]
    return prefixes + [b for b in candidate_blocks(num_layers, k) if b not in prefixes]


def individual_parameters(collective, block: list[int], num_classes: int, fresh_width: float = 0.5) -> int:
    return count_parameters(ConvNet(individual_config(collective.net.config, block, num_classes, fresh_width)))


def pseudo_pool(collective) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(uint8 images, labels, where from) for pseudo tasks: held-back classes when there are enough."""
    if len(set(collective.holdback_y.tolist())) >= 2:
        return collective.holdback_x, collective.holdback_y, "held-back classes (never trained on)"
    x = torch.cat([collective.memory_x, collective.heldout_x])
    y = torch.cat([collective.memory_y, collective.heldout_y])
    return x, y, "trained classes (no held-back classes yet)"


def pseudo_tasks(x_all: torch.Tensor, y_all: torch.Tensor, ways: int, shots: int, count: int, seed: int) -> list:
    """`count` tasks of `ways` classes, `shots` support images each, the rest of each class as query."""
    counts = torch.bincount(y_all)
    pool = [c for c in range(len(counts)) if counts[c] >= shots + 1]
    if len(pool) < 2:
        return []
    rng = np.random.default_rng(seed)
    ways = min(ways, len(pool))
    tasks = []
    for _ in range(count):
        classes = rng.choice(pool, ways, replace=False)
        s_idx, q_idx, sy, qy = [], [], [], []
        for new_id, c in enumerate(classes):
            idx = rng.permutation((y_all == int(c)).nonzero().flatten().numpy())
            s_idx.append(idx[:shots]); q_idx.append(idx[shots:])
            sy += [new_id] * shots; qy += [new_id] * (len(idx) - shots)
        tasks.append((from_uint8(x_all[np.concatenate(s_idx)]), torch.tensor(sy),
                      from_uint8(x_all[np.concatenate(q_idx)]), torch.tensor(qy), ways))
    return tasks


def task_accuracies(init: str, tasks: list, gene: Learngene, trunk: Learngene | None, block: list[int] | None,
                    seed: int, device, should_stop: ShouldStop | None = None) -> list[float]:
    accs = []
    for ti, (sx, sy, qx, qy, ways) in enumerate(tasks):
        check_stop(should_stop)
        opts = TrainOptions(init=init, seed=seed + ti)
        net, _, _ = make_net(init, gene, trunk, sx, sy, ways, opts, block, device, should_stop=should_stop)
        accs.append(accuracy(logits_of(net, qx, device), qy))
    return accs


def one_shot_evidence(tasks: list, whole: Learngene, block: list[int], seed: int, device,
                      should_stop: ShouldStop | None = None) -> dict:
    """Mean one-shot accuracy of each init on the same pseudo tasks, and the paired standard errors against
    the learngene individual: {"learngene": .., "scratch": .., "instant": .., "tasks": n, "paired_se": {..}}."""
    per_task = {init: task_accuracies(init, tasks, whole, whole, block, seed, device, should_stop)
                for init in ("learngene", "scratch", "instant")}
    return {**{i: float(np.mean(v)) for i, v in per_task.items()}, "tasks": len(tasks),
            "paired_se": paired_margins(per_task)}


def extract_learngene(collective, method: str = "auto", k: int = 3, param_budget: int | None = None,
                      validation: ValidationOptions | None = None, progress=None,
                      should_stop: ShouldStop | None = None) -> Learngene:
    """The collective's learngene by `method`, with the evidence for it (scores, candidates, strategies)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    method = DEFAULT_METHOD if method == "auto" else method
    o = validation or ValidationOptions()
    net = collective.net
    scores = stability_scores(collective.recorder.table("share"))
    layer_params = [sum(p.numel() for p in b.parameters()) for b in net.blocks]
    selections = {"gradient": choose_block(scores, k, layer_params, param_budget)}
    whole = Learngene.whole(collective)
    candidates: list[dict] = []
    strategies: dict = {}
    pool = None
    if method == "validated":
        x_all, y_all, pool = pseudo_pool(collective)
        tasks = pseudo_tasks(x_all, y_all, o.ways, o.shots, o.tasks, o.seed)
        cap = o.max_fraction * collective.parameters
        blocks = [b for b in all_blocks(len(net.blocks), k)
                  if individual_parameters(collective, b, o.ways) <= cap
                  and (param_budget is None or sum(layer_params[i] for i in b) <= param_budget)]
        steps = len(blocks) + 1
        for bi, block in enumerate(blocks if tasks else []):
            acc = float(np.mean(task_accuracies("learngene", tasks, whole, whole, block, o.seed, collective.device,
                                                should_stop)))
            candidates.append({"layers": block, "accuracy": acc,
                               "parameters": individual_parameters(collective, block, o.ways)})
            if progress:
                progress({"stage": "validate", "epoch": bi + 1, "epochs": steps, "fraction": (bi + 1) / steps})
        if candidates:
            best = max(candidates, key=lambda c: (round(c["accuracy"], 6), -c["parameters"]))
            selections["validated"] = best["layers"]
            # One-shot evidence for init="auto": the chosen block against scratch and the instant model.
            one_shot = pseudo_tasks(x_all, y_all, o.ways, 1, o.evidence_tasks, o.seed + 1)
            if one_shot:
                strategies["1"] = one_shot_evidence(one_shot, whole, best["layers"], o.seed, collective.device,
                                                    should_stop)
            if progress:
                progress({"stage": "validate", "epoch": steps, "epochs": steps, "fraction": 1.0})
    layers = selections.get(method) or selections["gradient"]
    used = method if method in selections else "gradient"
    state = {k_: v.detach().cpu().clone() for k_, v in net.state_dict().items()}
    tensors = {k_: v for k_, v in state.items() if k_.startswith(tuple(f"blocks.{p}." for p in layers))}
    return Learngene(
        source_config=copy.deepcopy(net.config), spec=collective.spec, layers=list(layers), tensors=tensors,
        method=used, scores=[float(s) for s in scores],
        grad_stats={s: collective.recorder.table(s).tolist() for s in collective.recorder.history},
        selections=selections, candidates=candidates,
        source={"tasks_seen": collective.tasks_seen, "widths": list(net.config.widths),
                "parameters": collective.parameters, "validation_pool": pool,
                "held_back_classes": len(collective.held_back_classes)},
        strategies=strategies,
    )
