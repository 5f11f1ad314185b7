"""The evaluation protocol: N-way K-shot target tasks, mean and 95% confidence interval.

    for seed in range(30):
        support_idx, query_idx, classes = sample_episode(labels, candidate_classes, ways=20, shots=1, seed=seed)
    mean, ci = mean_ci(accuracies)
"""
from __future__ import annotations

import numpy as np


def sample_episode(labels: np.ndarray, classes: list[int], ways: int, shots: int, seed: int,
                   min_query: int = 1) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Pick `ways` classes, `shots` support samples each; the rest of each class is the query."""
    rng = np.random.default_rng(seed)
    eligible = [c for c in classes if (labels == c).sum() >= shots + min_query]
    if len(eligible) < ways:
        raise ValueError(f"only {len(eligible)} classes have {shots}+{min_query} samples; need {ways}")
    chosen = [int(c) for c in rng.choice(eligible, ways, replace=False)]
    support, query = [], []
    for c in chosen:
        idx = rng.permutation(np.flatnonzero(labels == c))
        support.append(idx[:shots])
        query.append(idx[shots:])
    return np.concatenate(support), np.concatenate(query), chosen


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the normal-approximation 95% confidence interval."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()) if len(v) else float("nan"), float("nan")
    return float(v.mean()), float(1.96 * v.std(ddof=1) / np.sqrt(len(v)))
