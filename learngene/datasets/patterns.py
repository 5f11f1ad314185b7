"""Synthetic pattern images: one random binary pattern per class name, shifted and noisy (tests, benchmarks).

    x, y = pattern_images(["a", "b", "c"], per_class=8)    # x (24, 16, 16) uint8, y class names

The pattern depends only on the class name, so a class looks the same in every task that has it, and a
few epochs learn it.
"""
from __future__ import annotations

import zlib

import numpy as np


def pattern_images(classes: list[str], per_class: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in classes:
        pattern = (np.random.default_rng(zlib.crc32(c.encode())).random((size, size)) > 0.5) * 200.0
        for _ in range(per_class):
            img = np.roll(pattern, tuple(rng.integers(-1, 2, size=2)), axis=(0, 1)) + rng.normal(0, 20, (size, size))
            xs.append(np.clip(img, 0, 255).astype(np.uint8))
            ys.append(c)
    return np.stack(xs), np.array(ys)
