"""The one training loop (collective, individuals, joint reference, pseudo tasks) and its small helpers.

    history = train(net, draw, steps=200, lr=2e-3, warmup=10, steps_per_epoch=20,
                    on_epoch=lambda epoch, stats: stats["loss"] < 0.01)     # True stops early
    logits_of(net, x, device), accuracy(logits, y)

`draw(step)` returns the next batch (x, y) on the CPU, already augmented; the loop moves it to the
device, takes the step and keeps the books. What differs between callers (which samples, replay,
distillation, learning rate per layer, frozen BatchNorm statistics) comes in as arguments.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from .distributed import Parallel

Progress = Callable[[dict], None]
ShouldStop = Callable[[], bool]
Batch = tuple[torch.Tensor, torch.Tensor]


class Cancelled(Exception):
    """Training stopped because `should_stop()` answered True."""


def check_stop(should_stop: ShouldStop | None) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled("training was cancelled")


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int,
                  warmup_steps: int = 0) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up over `warmup_steps`, then a cosine decay to zero at `total_steps`."""
    total, warm = max(total_steps, 1), max(0, min(warmup_steps, total_steps - 1))

    def factor(s: int) -> float:
        if s < warm:
            return (s + 1) / (warm + 1)
        return 0.5 * (1 + math.cos(math.pi * min(s - warm, total - warm) / max(total - warm, 1)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def param_groups(net: nn.Module, lr: float, scaled: dict[str, float] | None = None) -> list[dict]:
    """AdamW groups: parameters whose name starts with a key of `scaled` learn at lr × its value."""
    scaled = scaled or {}
    groups: dict[float, list[nn.Parameter]] = {}
    for name, p in net.named_parameters():
        scale = next((v for prefix, v in scaled.items() if name.startswith(prefix)), 1.0)
        groups.setdefault(scale, []).append(p)
    return [{"params": ps, "lr": lr * s} for s, ps in groups.items() if s > 0]


def train(net: nn.Module, draw: Callable[[int], Batch], *, steps: int, lr: float, weight_decay: float = 5e-4,
          warmup: int = 0, lr_scale: dict[str, float] | None = None, label_smoothing: float = 0.0,
          extra_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
          after_backward: Callable[[], None] | None = None, frozen_bn: Iterable[nn.Module] = (),
          steps_per_epoch: int | None = None, on_epoch: Callable[[int, dict], bool | None] | None = None,
          should_stop: ShouldStop | None = None, device: torch.device | None = None,
          parallel: Parallel | None = None) -> list[dict]:
    """Train `net` for `steps` AdamW steps (warm-up + cosine); returns one stats dict per epoch.

    `extra_loss(logits, x)` adds to the cross-entropy (distillation, anchor penalty); `after_backward`
    runs between backward and step (gradient statistics); BatchNorm layers in `frozen_bn` stay in eval
    mode, so their inherited running statistics are used and kept. `on_epoch(epoch, stats)` is called
    every `steps_per_epoch` steps and at the end; answering True stops training early.
    With `parallel` (learngene/distributed.py, one rank of data-parallel training) each step takes this
    rank's rows of the global batch `draw` gives, DDP averages the gradients, and the epoch stats are those of
    the global batches; without it nothing of that runs.
    """
    device = device or next(net.parameters()).device
    net.to(device).train()
    frozen = list(frozen_bn)
    for m in frozen:
        m.eval()
    model = parallel.wrap(net) if parallel is not None else net
    optim = torch.optim.AdamW(param_groups(net, lr, lr_scale), lr=lr, weight_decay=weight_decay)
    sched = warmup_cosine(optim, steps, warmup)
    per_epoch = steps_per_epoch or steps
    history: list[dict] = []
    total, correct, seen = 0.0, 0, 0
    for step in range(steps):
        check_stop(should_stop)
        bx, by = draw(step)
        if parallel is not None:
            bx, by, share = parallel.shard(bx, by)
        bx, by = bx.to(device, non_blocking=True), by.to(device, non_blocking=True)
        logits = model(bx)
        loss = F.cross_entropy(logits, by, label_smoothing=label_smoothing)
        if extra_loss is not None:
            loss = loss + extra_loss(logits, bx)
        optim.zero_grad(set_to_none=True)
        (loss if parallel is None else loss * share).backward()
        if after_backward is not None:
            after_backward()
        optim.step()
        sched.step()
        total += float(loss.detach()) * len(by)
        correct += int((logits.detach().argmax(1) == by).sum())
        seen += len(by)
        if (step + 1) % per_epoch == 0 or step + 1 == steps:
            if parallel is not None:
                total, correct, seen = parallel.sum(total, correct, seen)
            stats = {"epoch": len(history) + 1, "steps": step + 1, "loss": total / max(seen, 1),
                     "accuracy": correct / max(seen, 1)}
            history.append(stats)
            total, correct, seen = 0.0, 0, 0
            if on_epoch is not None and on_epoch(stats["epoch"], stats):
                break
    if parallel is not None:
        parallel.unwrap(net)
    net.eval()
    return history


@torch.no_grad()
def logits_of(net: nn.Module, x: torch.Tensor, device: torch.device, batch: int = 512) -> torch.Tensor:
    """Eval-mode logits (N, classes) on the CPU, computed in batches on `device`."""
    was_training = net.training
    net.eval()
    out = [net(x[i : i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)]
    net.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


@torch.no_grad()
def features_of(net: nn.Module, x: torch.Tensor, device: torch.device, batch: int = 512,
                which: str = "conv") -> torch.Tensor:
    """Eval-mode features (N, D): globally pooled conv features, or the MLP's output."""
    was_training = net.training
    net.eval()
    fn = net.conv_features if which == "conv" else net.features
    out = [fn(x[i : i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)]
    net.train(was_training)
    return torch.cat(out)


def class_means(f: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, ...) samples and their labels → (num_classes, ...) the mean sample of each class."""
    return torch.stack([f[y == c].mean(0) for c in range(num_classes)])


def linear_probe(f: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int = 0, steps: int = 200,
                 weight_decay: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """A logistic regression on features f (N, D) → (weight (num_classes, D), bias): each feature standardised
    on f, L2-penalised, L-BFGS; the standardisation is folded into the returned weight and bias."""
    with torch.no_grad():
        mean = f.mean(0)
        std = f.std(0).clamp_min(1e-6) if len(f) > 1 else torch.ones_like(mean)
        z = (f - mean) / std
    with torch.random.fork_rng(devices=[]):  # a seeded start that leaves the caller's random state alone
        torch.manual_seed(seed)
        head = nn.Linear(f.shape[1], num_classes)
    opt = torch.optim.LBFGS(head.parameters(), lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(z), y) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():  # w·(f − mean)/std + b = (w/std)·f + (b − (w/std)·mean)
        weight = head.weight / std
        return weight, head.bias - weight @ mean


def accuracy(logits: torch.Tensor, y: torch.Tensor | np.ndarray) -> float:
    y = torch.as_tensor(y)
    if len(y) == 0:
        return float("nan")
    return float((logits.argmax(1) == y).float().mean())


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Converted images in [-1, 1] (N, C, S, S) → compact uint8 (N, C, S, S) for storage."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1.0
