"""What a user would otherwise do with a few labelled samples, for the benchmark to compare against.

All take converted images (N, C, S, S) and return accuracy on the query set:
- `prototype_accuracy`: nearest class mean (cosine) on the collective's pooled conv features;
- `linear_probe_accuracy`: a logistic-regression head on those frozen features;
- fine-tuning the whole collective with a new head is `train_individual` on `Learngene.whole(c)`,
  and scratch / layer ablations are `train_individual` with other `init` / `layers`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .device import select_device
from .training import accuracy, features_of


def prototype_accuracy(net, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor) -> float:
    device = select_device()
    fs = F.normalize(features_of(net, sx, device), dim=1)
    fq = F.normalize(features_of(net, qx, device), dim=1)
    protos = F.normalize(torch.stack([fs[sy == c].mean(0) for c in range(int(sy.max()) + 1)]), dim=1)
    return accuracy(fq @ protos.T, qy)


def linear_probe_accuracy(net, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor,
                          steps: int = 200, weight_decay: float = 1e-3) -> float:
    device = select_device()
    fs, fq = features_of(net, sx, device), features_of(net, qx, device)
    mean, std = fs.mean(0), fs.std(0).clamp_min(1e-6) if len(fs) > 1 else torch.ones(fs.shape[1])
    fs, fq = (fs - mean) / std, (fq - mean) / std
    head = torch.nn.Linear(fs.shape[1], int(sy.max()) + 1)
    opt = torch.optim.LBFGS(head.parameters(), lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(fs), sy) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return accuracy(head(fq), qy)
