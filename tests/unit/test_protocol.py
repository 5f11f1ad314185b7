import numpy as np
import pytest
import torch

from learngene import select_device
from learngene.baselines import linear_probe_accuracy, prototype_accuracy, raw_pixel_accuracy
from learngene.model import ConvNet, NetConfig
from learngene.protocol import mean_ci, sample_episode


def test_episode_support_and_query_are_disjoint_and_sized():
    labels = np.repeat(np.arange(10), 6)
    s, q, classes = sample_episode(labels, list(range(10)), ways=4, shots=2, seed=0)
    assert len(s) == 8 and len(q) == 16 and len(set(classes)) == 4
    assert not set(s) & set(q)
    assert set(labels[s]) == set(classes) == set(labels[q])
    s2, _, _ = sample_episode(labels, list(range(10)), ways=4, shots=2, seed=0)
    assert np.array_equal(s, s2)  # fixed seeds
    with pytest.raises(ValueError):
        sample_episode(labels, list(range(3)), ways=4, shots=2, seed=0)


def test_mean_ci():
    m, ci = mean_ci([0.5, 0.7, 0.6, 0.6])
    assert m == pytest.approx(0.6) and 0 < ci < 0.2


def test_baselines_separate_an_easy_task(task_factory):
    from learngene import to_input, InputSpec
    torch.manual_seed(0)
    net = ConvNet(NetConfig(1, [8, 8], [0], [], 2))
    sup = task_factory(["a", "b", "c"], per_class=4, noise=5)
    qry = task_factory(["a", "b", "c"], per_class=4, noise=5, seed=9)
    sx, qx = to_input(sup.x, InputSpec(1, 16)), to_input(qry.x, InputSpec(1, 16))
    sy, qy = torch.from_numpy(sup.y), torch.from_numpy(qry.y)
    assert prototype_accuracy(net, sx, sy, qx, qy) > 0.6
    assert linear_probe_accuracy(net, sx, sy, qx, qy) > 0.6
    assert raw_pixel_accuracy(sx, sy, qx, qy) > 0.6


def test_raw_pixel_baseline_is_the_nearest_class_mean():
    sx = torch.tensor([[[[0.0, 0.0]]], [[[0.2, 0.0]]], [[[1.0, 1.0]]], [[[0.8, 1.0]]]])  # (4, 1, 1, 2)
    sy = torch.tensor([0, 0, 1, 1])
    qx = torch.tensor([[[[0.45, 0.45]]], [[[0.55, 0.55]]], [[[0.6, 0.4]]]])  # means (0.1, 0) and (0.9, 1)
    assert raw_pixel_accuracy(sx, sy, qx, torch.tensor([0, 1, 0])) == 1.0
    assert raw_pixel_accuracy(sx, sy, qx, torch.tensor([1, 0, 1])) == 0.0


def test_device_selection(monkeypatch):
    monkeypatch.setenv("LEARNGENE_DEVICE", "cpu")
    assert select_device().type == "cpu"
    monkeypatch.delenv("LEARNGENE_DEVICE")
    assert select_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
