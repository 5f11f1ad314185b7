import itertools

import numpy as np
import torch

from learngene.openworld import auroc, calibrate_threshold, open_world_report, unknown_score


def test_auroc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    k, u = rng.integers(0, 5, 30).astype(float), rng.integers(2, 8, 20).astype(float)
    pairs = [(1.0 if b > a else 0.5 if b == a else 0.0) for a, b in itertools.product(k, u)]
    assert abs(auroc(k, u) - np.mean(pairs)) < 1e-9
    assert auroc(np.array([0.0]), np.array([1.0])) == 1.0
    assert auroc(np.array([]), np.array([1.0])) is None


def test_threshold_flags_five_percent_of_known():
    s = np.random.default_rng(1).normal(size=10_000)
    t = calibrate_threshold(s, tpr=0.95)
    assert abs((s > t).mean() - 0.05) < 0.005


def test_energy_is_lower_for_confident_logits():
    confident = torch.tensor([[10.0, 0.0, 0.0]])
    flat = torch.tensor([[0.1, 0.0, 0.05]])
    assert unknown_score(confident) < unknown_score(flat)
    assert unknown_score(confident, "max_softmax") < unknown_score(flat, "max_softmax")


def test_report_per_class_and_auroc():
    scores = np.array([0.0, 0.1, 5.0, 6.0])
    labels = np.array([0, 0, 1, 1])
    r = open_world_report(scores, labels, ["old", "new"], {"old"}, threshold=1.0)
    assert r["per_class"] == {"old": 0.0, "new": 1.0}
    assert r["auroc"] == 1.0
    # A task with only new classes compares against the stored known-class reference.
    r2 = open_world_report(scores[2:], np.array([0, 0]), ["new"], set(), 1.0, known_reference=np.array([0.0, 7.0]))
    assert r2["auroc"] == 0.5
