"""Training-time augmentation on batches of already converted images (N, C, S, S) in [-1, 1].

Mild random affine (shift, scale, rotation) for every input; brightness and contrast jitter for
colour inputs. No flips: they change the meaning of glyphs and digits, and a user with natural
images loses little without them. Test images are never augmented.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment(x: torch.Tensor, generator: torch.Generator | None = None, strength: float = 1.0) -> torch.Tensor:
    n = x.shape[0]
    dev = x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * (hi - lo) + lo).to(dev)

    angle = u(-10, 10) * strength * math.pi / 180
    scale = 1 + u(-0.1, 0.1) * strength
    tx, ty = u(-0.1, 0.1) * strength * 2, u(-0.1, 0.1) * strength * 2  # grid units: 2 = full width
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Pad with each image's own corner value, so dark-on-light and light-on-dark both work.
    fill = x[:, :, :1, :1]
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
    if x.shape[1] == 3:
        contrast = u(0.8, 1.2).view(n, 1, 1, 1)
        brightness = u(-0.1, 0.1).view(n, 1, 1, 1)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * contrast + mean + brightness).clamp(-1, 1)
    return out
