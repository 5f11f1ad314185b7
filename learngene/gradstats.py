"""Gradient statistics per conv layer and the learngene criterion built on them.

While the collective learns task t, after every backward pass `GradientRecorder.record()` adds, for
each conv layer l, the share of weight-gradient entries with |dL/dW| > tau and the mean |dL/dW|
relative to the mean |W|. `finish_task()` averages them over the task's batches: g(l, t).

A layer whose g(l, t) stays low and steady across tasks changes little whatever the task: it holds
task-independent knowledge. `stability_scores` turns the table into one score per layer (lower is
more stable) and `choose_block` picks the contiguous block of the most stable layers.

    rec = GradientRecorder(net.conv_layers())
    loss.backward(); rec.record()
    rec.finish_task()
    scores = stability_scores(rec.table("share"))
    layers = choose_block(scores, k=3)
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn

STATISTICS = ("share", "relative")


class GradientRecorder:
    """Accumulates per-layer gradient statistics on the device; one host sync per task."""

    def __init__(self, tau: float = 1e-4):
        self.tau = tau
        self.history: dict[str, list[list[float]]] = {s: [] for s in STATISTICS}  # [task][layer]
        self._sums: torch.Tensor | None = None
        self._batches = 0

    @torch.no_grad()
    def record(self, convs: list[nn.Conv2d]) -> None:
        rows = []
        for conv in convs:
            g, w = conv.weight.grad, conv.weight
            if g is None:
                rows.append(torch.zeros(2, device=w.device))
                continue
            a = g.abs()
            rows.append(torch.stack([(a > self.tau).float().mean(), a.mean() / w.abs().mean().clamp_min(1e-12)]))
        batch = torch.stack(rows)  # (layers, 2)
        self._sums = batch if self._sums is None else self._sums + batch
        self._batches += 1

    def finish_task(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Close the task's row. `reduce` (data-parallel growth: the mean over ranks) makes the per-batch sums
        one table on every rank; each rank recorded the statistics of the same all-reduced gradient."""
        if self._sums is None:
            return
        if reduce is not None:
            self._sums = reduce(self._sums)
        mean = (self._sums / self._batches).cpu().numpy()
        for i, s in enumerate(STATISTICS):
            self.history[s].append([float(v) for v in mean[:, i]])
        self._sums, self._batches = None, 0

    def table(self, statistic: str = "share") -> np.ndarray:
        """(layers, tasks) array of g(l, t)."""
        return np.array(self.history[statistic], dtype=np.float64).T

    def to_dict(self) -> dict:
        return {"tau": self.tau, "history": self.history}

    @classmethod
    def from_dict(cls, d: dict) -> "GradientRecorder":
        rec = cls(d.get("tau", 1e-4))
        rec.history = {s: [list(r) for r in d["history"].get(s, [])] for s in STATISTICS}
        return rec


def stability_scores(table: np.ndarray) -> np.ndarray:
    """One score per layer from g(l, t), lower = more stable: mean and spread over tasks, each
    scaled by its largest value across layers so the two count equally."""
    if table.size == 0:
        raise ValueError("no gradient statistics recorded yet: learn at least one task first")
    mean = table.mean(axis=1)
    spread = table.std(axis=1)
    return mean / max(mean.max(), 1e-12) + spread / max(spread.max(), 1e-12)


def candidate_blocks(num_layers: int, k: int) -> list[list[int]]:
    k = max(1, min(k, num_layers))
    return [list(range(a, a + k)) for a in range(num_layers - k + 1)]


def choose_block(scores: np.ndarray, k: int = 3, layer_params: list[int] | None = None,
                 param_budget: int | None = None) -> list[int]:
    """Contiguous block with the lowest mean stability score.

    With `param_budget`, every block length is considered and the longest blocks that fit the
    budget compete (ties in length broken by score).
    """
    n = len(scores)
    if param_budget is None:
        return min(candidate_blocks(n, k), key=lambda b: float(np.mean(scores[b])))
    if layer_params is None:
        raise ValueError("param_budget needs layer_params")
    fitting = [b for kk in range(1, n + 1) for b in candidate_blocks(n, kk)
               if sum(layer_params[i] for i in b) <= param_budget]
    if not fitting:
        raise ValueError(f"no layer fits a budget of {param_budget} parameters")
    return min(fitting, key=lambda b: (-len(b), float(np.mean(scores[b]))))
