"""Open-world recognition: is a sample from a class the network has never learned?

A score per sample where higher means "more likely unknown": `knn`, the cosine distance from a
sample's features to the nearest stored exemplar (default for the collective: it separated new scripts
best in the benchmark), the energy score `-T·logsumexp(logits/T)`, or `1 - max softmax`. A threshold is calibrated on held-out
samples of known classes so that 95% of them stay below it (95% true-positive rate).

    s = unknown_score(logits)                     # (N,)
    t = calibrate_threshold(s_known_heldout)      # flags ~5% of known samples
    flags = s > t
"""
from __future__ import annotations

import numpy as np
import torch

SCORES = ("knn", "energy", "max_softmax")


def unknown_score(logits: torch.Tensor, method: str = "energy", temperature: float = 1.0) -> torch.Tensor:
    if method == "energy":
        return -temperature * torch.logsumexp(logits / temperature, dim=1)
    if method == "max_softmax":
        return 1.0 - torch.softmax(logits, dim=1).max(dim=1).values
    if method == "knn":
        raise ValueError("the knn score needs features: use knn_score")
    raise ValueError(f"unknown score {method!r}; choose from {SCORES}")


def knn_score(features: torch.Tensor, reference: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """1 - cosine similarity to the nearest reference feature (N, D) x (M, D) → (N,)."""
    ref = torch.nn.functional.normalize(reference, dim=1)
    out = []
    for i in range(0, len(features), chunk):
        f = torch.nn.functional.normalize(features[i : i + chunk], dim=1)
        out.append(1 - (f @ ref.T).max(dim=1).values)
    return torch.cat(out) if out else torch.zeros(0)


def calibrate_threshold(known_scores: np.ndarray | torch.Tensor, tpr: float = 0.95) -> float:
    """The score below which a share `tpr` of known-class samples falls."""
    s = np.asarray(known_scores, dtype=np.float64)
    if s.size == 0:
        return float("inf")
    return float(np.quantile(s, tpr))


def auroc(known_scores: np.ndarray, unknown_scores: np.ndarray) -> float | None:
    """Probability that an unknown sample scores above a known one (ties count half); None if a side is empty."""
    k = np.asarray(known_scores, dtype=np.float64)
    u = np.asarray(unknown_scores, dtype=np.float64)
    if k.size == 0 or u.size == 0:
        return None
    allv = np.concatenate([k, u])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    ranks[order] = np.arange(1, len(allv) + 1)
    # Average ranks over ties.
    _, inv, counts = np.unique(allv, return_inverse=True, return_counts=True)
    sums = np.zeros(len(counts))
    np.add.at(sums, inv, ranks)
    ranks = (sums / counts)[inv]
    r_u = ranks[len(k):].sum()
    return float((r_u - u.size * (u.size + 1) / 2) / (u.size * k.size))


def open_world_report(scores: np.ndarray, labels: np.ndarray, class_names: list[str], known: set[str],
                      threshold: float, known_reference: np.ndarray | None = None,
                      method: str = "energy") -> dict:
    """Per class of an incoming task: share flagged unknown; AUROC of new vs known classes.

    Known-class samples of the task itself are the negatives when the task has any; otherwise the
    held-out known samples kept by the collective (`known_reference`) stand in.
    """
    flags = scores > threshold
    per_class = {}
    for c, name in enumerate(class_names):
        m = labels == c
        if m.any():
            per_class[name] = float(flags[m].mean())
    is_new = np.array([class_names[c] not in known for c in labels])
    negatives = scores[~is_new]
    if negatives.size == 0 and known_reference is not None:
        negatives = known_reference
    return {
        "score": method,
        "threshold": float(threshold) if np.isfinite(threshold) else None,
        "per_class": per_class,
        "new_flagged": float(flags[is_new].mean()) if is_new.any() else None,
        "known_flagged": float(flags[~is_new].mean()) if (~is_new).any() else None,
        "auroc": auroc(negatives, scores[is_new]),
    }
