"""Small synthetic data for the method library's unit tests: separable, fast, deterministic."""
import zlib

import numpy as np
import pytest

from learngene import TaskDataset


def make_task(names, per_class=12, size=16, channels=1, seed=0, noise=25):
    """One random prototype image per class name, samples = prototype + noise (easily separable).

    The prototype depends on the name only; `seed` draws other noise (a query set for the same classes)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i, name in enumerate(names):
        # Coarse blocks, so the mild shifts of augmentation keep a class recognisable.
        coarse = np.random.default_rng(zlib.crc32(name.encode())).integers(0, 256, (4, 4, channels))
        proto = np.repeat(np.repeat(coarse, -(-size // 4), 0), -(-size // 4), 1)[:size, :size]
        for _ in range(per_class):
            xs.append(np.clip(proto + rng.integers(-noise, noise + 1, proto.shape), 0, 255).astype(np.uint8))
            ys.append(i)
    return TaskDataset(np.stack(xs), np.array(ys), list(names))


@pytest.fixture
def task_factory():
    return make_task
