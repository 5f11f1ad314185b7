"""Where to compute: CUDA when present, else CPU; `LEARNGENE_DEVICE` overrides.

    device = select_device()          # torch.device("cuda") on a GPU machine
"""
from __future__ import annotations

import os

import torch


def select_device(preferred: str | None = None) -> torch.device:
    name = preferred or os.environ.get("LEARNGENE_DEVICE") or ""
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")
