"""Small training helpers shared by the collective, the individuals and the baselines."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn as nn

Progress = Callable[[dict], None]
ShouldStop = Callable[[], bool]


class Cancelled(Exception):
    """Training stopped because `should_stop()` answered True."""


def check_stop(should_stop: ShouldStop | None) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled("training was cancelled")


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


def cosine_lr(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, total_steps) / max(total_steps, 1)))
    )
