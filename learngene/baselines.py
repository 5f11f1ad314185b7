"""What a user would otherwise do with a few labelled samples, for the benchmark to compare against.

All take converted images (N, C, S, S) and return accuracy on the query set:
- `raw_pixel_accuracy`: nearest class mean (Euclidean) on the pixels themselves, no net: how hard the tasks are;
- `prototype_accuracy`: nearest class mean (cosine) on the collective's pooled conv features;
- `linear_probe_accuracy`: a logistic-regression head on those frozen features;
- `train_joint`: the joint reference, the same architecture trained on all classes at once;
- fine-tuning the whole collective with a new head is `train_individual` on `Learngene.whole(c)`,
  and scratch / layer ablations are `train_individual` with other `init` / `layers`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .device import select_device
from .training import accuracy, class_means, features_of, linear_probe


def raw_pixel_accuracy(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor) -> float:
    means = class_means(sx, sy, int(sy.max()) + 1).flatten(1)
    return accuracy(-torch.cdist(qx.flatten(1).float(), means.float()), qy)


def prototype_accuracy(net, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor) -> float:
    device = select_device()
    fs = F.normalize(features_of(net, sx, device), dim=1)
    fq = F.normalize(features_of(net, qx, device), dim=1)
    protos = F.normalize(class_means(fs, sy, int(sy.max()) + 1), dim=1)
    return accuracy(fq @ protos.T, qy)


def linear_probe_accuracy(net, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor,
                          steps: int = 200, weight_decay: float = 1e-3) -> float:
    device = select_device()
    fs, fq = features_of(net, sx, device), features_of(net, qx, device)
    weight, bias = linear_probe(fs, sy, int(sy.max()) + 1, steps=steps, weight_decay=weight_decay)
    return accuracy(fq @ weight.T + bias, qy)


def train_joint(x: torch.Tensor, y: torch.Tensor, config, steps: int, batch_size: int = 64, lr: float = 1e-3,
                weight_decay: float = 5e-4, seed: int = 0, progress=None):
    """The joint reference: one net of `config` trained on every class at once (x converted, y global ids)
    with the collective's loop, augmentation and optimiser, for `steps` batches. Returns the trained net."""
    from .augment import augment
    from .model import ConvNet
    from .training import train

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = ConvNet(config)
    order = torch.cat([torch.randperm(len(x), generator=gen) for _ in range(-(-steps * batch_size // len(x)))])

    def draw(step: int):
        idx = order[step * batch_size : (step + 1) * batch_size]
        return augment(x[idx], gen), y[idx]

    per_epoch = max(1, -(-len(x) // batch_size))
    train(net, draw, steps=steps, lr=lr, weight_decay=weight_decay, warmup=min(per_epoch, 100),
          steps_per_epoch=per_epoch, on_epoch=(lambda e, s: progress(s)) if progress else None,
          device=select_device())
    return net
