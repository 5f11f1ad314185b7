"""Learngenes: the collective's task-independent layers, chosen, explained, exported.

Two selections, both recorded on every learngene:
- `gradient` (the paper's criterion, automated): the contiguous block of the K layers whose gradient
  statistics stayed lowest and steadiest across tasks (`gradstats.stability_scores`).
- `validated` (the authors' 2023 follow-up): every contiguous K-block is tried on pseudo target tasks
  built from the classes that reached the collective as open-world (unknown) classes; small individuals
  are trained from each block and the block whose individuals score best wins.

    lg = Learngene.extract(collective, method="auto", k=3)
    lg.layers, lg.info()["scores"]
    Learngene.from_bytes(lg.to_bytes())
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import InputSpec
from .gradstats import candidate_blocks, choose_block, stability_scores
from .individual import TrainOptions, build_net, fit
from .model import NetConfig
from .serialize import pack, unpack
from .training import accuracy, from_uint8, logits_of

METHODS = ("auto", "gradient", "validated")
# What "auto" means; set from the benchmark's results (README, "Which selection is the default").
DEFAULT_METHOD = "validated"


@dataclass
class ValidationOptions:
    tasks: int = 3  # pseudo target tasks per candidate block
    ways: int = 10
    shots: int = 2
    epochs: int = 10
    seed: int = 0


@dataclass
class Learngene:
    """Inherited conv layers plus the evidence for choosing them."""

    source_config: NetConfig  # the collective's layout when the learngene was taken
    spec: InputSpec
    layers: list[int]
    tensors: dict[str, torch.Tensor]  # "blocks.{p}.conv.weight", "blocks.{p}.bn.*" for p in layers
    method: str
    scores: list[float]  # stability score per layer (lower = more stable)
    grad_stats: dict  # {"share": [[g(l, t)]...], "relative": ...} as layers x tasks
    selections: dict = field(default_factory=dict)  # {"gradient": [...], "validated": [...]}
    candidates: list[dict] = field(default_factory=list)  # validated: {"layers", "accuracy"} per block
    source: dict = field(default_factory=dict)  # tasks_seen, widths, parameters of the collective

    @property
    def parameters(self) -> int:
        return sum(v.numel() for k, v in self.tensors.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))

    def info(self) -> dict:
        return {
            "layers": self.layers, "method": self.method, "parameters": self.parameters,
            "scores": self.scores, "grad_stats": self.grad_stats, "selections": self.selections,
            "candidates": self.candidates, "source": self.source, "spec": self.spec.to_dict(),
            "layer_shapes": {str(p): list(self.tensors[f"blocks.{p}.conv.weight"].shape) for p in self.layers},
            "input_channels": self.source_config.in_width(self.layers[0]),
        }

    # ------------------------------------------------------------------------- extraction
    @classmethod
    def extract(cls, collective, method: str = "auto", k: int = 3, param_budget: int | None = None,
                validation: ValidationOptions | None = None, progress=None, should_stop=None) -> "Learngene":
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}")
        method = DEFAULT_METHOD if method == "auto" else method
        table = collective.recorder.table("share")
        scores = stability_scores(table)
        net = collective.net
        layer_params = [sum(p.numel() for p in b.parameters()) for b in net.blocks]
        selections = {"gradient": choose_block(scores, k, layer_params, param_budget)}
        candidates: list[dict] = []
        if method == "validated":
            candidates = validate_blocks(collective, candidate_blocks(len(net.blocks), k), validation, progress,
                                         should_stop)
            if candidates:
                best = max(candidates, key=lambda c: c["accuracy"])
                selections["validated"] = best["layers"]
        layers = selections.get(method) or selections["gradient"]
        used = method if method in selections else "gradient"
        state = {k_: v.detach().cpu().clone() for k_, v in net.state_dict().items()}
        tensors = {k_: v for k_, v in state.items() if k_.startswith(tuple(f"blocks.{p}." for p in layers))}
        return cls(
            source_config=copy.deepcopy(net.config), spec=collective.spec, layers=list(layers), tensors=tensors,
            method=used, scores=[float(s) for s in scores],
            grad_stats={s: collective.recorder.table(s).tolist() for s in collective.recorder.history},
            selections=selections, candidates=candidates,
            source={"tasks_seen": collective.tasks_seen, "widths": list(net.config.widths),
                    "parameters": collective.parameters},
        )

    # ------------------------------------------------------------------------- storage
    def to_bytes(self) -> bytes:
        meta = {"kind": "learngene", "source_config": self.source_config.to_dict(), "spec": self.spec.to_dict(),
                "layers": self.layers, "method": self.method, "scores": self.scores, "grad_stats": self.grad_stats,
                "selections": self.selections, "candidates": self.candidates, "source": self.source}
        return pack(self.tensors, meta)

    @classmethod
    def from_bytes(cls, blob: bytes) -> "Learngene":
        tensors, meta = unpack(blob)
        if meta.get("kind") != "learngene":
            raise ValueError("not a learngene artifact")
        return cls(NetConfig.from_dict(meta["source_config"]), InputSpec(**meta["spec"]), meta["layers"], tensors,
                   meta["method"], meta["scores"], meta["grad_stats"], meta["selections"], meta["candidates"],
                   meta["source"])

    @classmethod
    def whole(cls, collective) -> "Learngene":
        """Every conv layer of the collective (for the fine-tuning baseline and ablations)."""
        net = collective.net
        return cls(copy.deepcopy(net.config), collective.spec, list(range(len(net.blocks))),
                   {k: v.detach().cpu().clone() for k, v in net.state_dict().items() if k.startswith("blocks.")},
                   "whole", [], {}, {}, [], {"tasks_seen": collective.tasks_seen})


def open_world_classes(collective) -> list[int]:
    """Global ids of classes that arrived after the first task (unknown to the collective then)."""
    index = {n: i for i, n in enumerate(collective.label_space)}
    return [index[n] for t in collective.tasks[1:] for n in t.get("new_classes", [])]


def validate_blocks(collective, blocks: list[list[int]], options: ValidationOptions | None = None,
                    progress=None, should_stop=None) -> list[dict]:
    """Mean accuracy of short-trained individuals from each block on pseudo target tasks."""
    o = options or ValidationOptions()
    pool = open_world_classes(collective) or sorted(set(collective.memory_y.tolist()))
    x_all = torch.cat([collective.memory_x, collective.heldout_x])
    y_all = torch.cat([collective.memory_y, collective.heldout_y])
    counts = torch.bincount(y_all, minlength=len(collective.label_space))
    pool = [c for c in pool if counts[c] >= o.shots + 1]
    if len(pool) < 2:
        return []
    rng = np.random.default_rng(o.seed)
    ways = min(o.ways, len(pool))
    tasks = []
    for _ in range(o.tasks):
        classes = rng.choice(pool, ways, replace=False)
        sx, sy, qx, qy = [], [], [], []
        for new_id, c in enumerate(classes):
            idx = (y_all == int(c)).nonzero().flatten().numpy()
            idx = rng.permutation(idx)
            sx.append(idx[: o.shots]); qx.append(idx[o.shots:])
            sy += [new_id] * o.shots; qy += [new_id] * (len(idx) - o.shots)
        tasks.append((np.concatenate(sx), torch.tensor(sy), np.concatenate(qx), torch.tensor(qy)))
    whole = Learngene.whole(collective)
    device = collective.device
    results = []
    for bi, block in enumerate(blocks):
        accs = []
        for ti, (s_idx, sy, q_idx, qy) in enumerate(tasks):
            net = build_net(whole, ways, "learngene", layers=block, generator_seed=o.seed + ti)
            opts = TrainOptions(epochs=o.epochs, seed=o.seed + ti)
            fit(net, from_uint8(x_all[s_idx]), sy, opts, device=device, should_stop=should_stop)
            accs.append(accuracy(logits_of(net, from_uint8(x_all[q_idx]), device), qy))
        results.append({"layers": block, "accuracy": float(np.mean(accs))})
        if progress:
            progress({"stage": "validate", "epoch": bi + 1, "epochs": len(blocks), "loss": None,
                      "fraction": (bi + 1) / len(blocks)})
    return results

