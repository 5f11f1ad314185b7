"""Learngenes: the collective's task-independent layers, with the evidence for choosing them.

Which layers is decided in `selection.py` (the gradient criterion and the validated choice); this
module holds the result and stores it as safetensors with JSON metadata, never pickle.

    lg = Learngene.extract(collective)                # = selection.extract_learngene(collective)
    lg.layers, lg.info()["candidates"]
    Learngene.from_bytes(lg.to_bytes())
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from .data import InputSpec
from .model import NetConfig
from .serialize import pack, unpack


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
    # {"1": {"learngene": acc, "scratch": …, "instant": …, "tasks": n, "paired_se": {"scratch": …, "instant": …}}}
    strategies: dict = field(default_factory=dict)

    @property
    def parameters(self) -> int:
        return sum(v.numel() for k, v in self.tensors.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))

    def info(self) -> dict:
        return {
            "layers": self.layers, "method": self.method, "parameters": self.parameters,
            "scores": self.scores, "grad_stats": self.grad_stats, "selections": self.selections,
            "candidates": self.candidates, "source": self.source, "spec": self.spec.to_dict(),
            "strategies": self.strategies,
            "layer_shapes": {str(p): list(self.tensors[f"blocks.{p}.conv.weight"].shape) for p in self.layers},
            "input_channels": self.source_config.in_width(self.layers[0]),
        }

    # ------------------------------------------------------------------------- extraction
    @classmethod
    def extract(cls, collective, method: str = "auto", k: int = 3, **kwargs) -> "Learngene":
        """`selection.extract_learngene`: the layers chosen by `method`, with their evidence."""
        from .selection import extract_learngene  # selection builds individuals; genes itself need not

        return extract_learngene(collective, method, k, **kwargs)

    # ------------------------------------------------------------------------- storage
    def to_bytes(self) -> bytes:
        meta = {"kind": "learngene", "source_config": self.source_config.to_dict(), "spec": self.spec.to_dict(),
                "layers": self.layers, "method": self.method, "scores": self.scores, "grad_stats": self.grad_stats,
                "selections": self.selections, "candidates": self.candidates, "source": self.source,
                "strategies": self.strategies}
        return pack(self.tensors, meta)

    @classmethod
    def from_bytes(cls, blob: bytes) -> "Learngene":
        tensors, meta = unpack(blob)
        if meta.get("kind") != "learngene":
            raise ValueError("not a learngene artifact")
        return cls(NetConfig.from_dict(meta["source_config"]), InputSpec(**meta["spec"]), meta["layers"], tensors,
                   meta["method"], meta["scores"], meta["grad_stats"], meta["selections"], meta["candidates"],
                   meta["source"], meta.get("strategies", {}))

    @classmethod
    def whole(cls, collective) -> "Learngene":
        """Every conv layer of the collective (for the fine-tuning baseline and ablations)."""
        net = collective.net
        return cls(copy.deepcopy(net.config), collective.spec, list(range(len(net.blocks))),
                   {k: v.detach().cpu().clone() for k, v in net.state_dict().items() if k.startswith("blocks.")},
                   "whole", [], {}, {}, [], {"tasks_seen": collective.tasks_seen})
