"""The evaluation protocol: N-way K-shot target tasks, mean and 95% confidence interval.

    for seed in range(30):
        support_idx, query_idx, classes = sample_episode(labels, candidate_classes, ways=20, shots=1, seed=seed)
    mean, ci = mean_ci(accuracies)                 # Student's t interval
    paired(learngene_accuracies, scratch_accuracies)["low"] > 0   # better on the same episodes
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


# Two-sided 95% quantiles of Student's t by degrees of freedom (no scipy needed); 1.96 beyond the table.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
         29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t_quantile(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom (next smaller tabulated df)."""
    if df < 1:
        return float("nan")
    return _T975[max(k for k in _T975 if k <= df)] if df <= 120 else 1.96


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% confidence interval (Student's t with n - 1 degrees of freedom)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()) if len(v) else float("nan"), float("nan")
    return float(v.mean()), float(t_quantile(len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def paired(a: list[float], b: list[float]) -> dict:
    """Paired comparison of two methods on the same episodes: mean difference a - b and its 95% interval."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    m, ci = mean_ci(d.tolist())
    return {"mean_difference": m, "ci95": ci, "low": m - ci, "high": m + ci, "episodes": len(d),
            "wins": int((d > 0).sum()), "losses": int((d < 0).sum())}
