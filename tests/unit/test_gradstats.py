import numpy as np
import pytest
import torch
import torch.nn as nn

from learngene.gradstats import GradientRecorder, choose_block, stability_scores


def test_recorder_measures_share_above_tau():
    convs = [nn.Conv2d(1, 2, 3, bias=False), nn.Conv2d(2, 2, 3, bias=False)]
    convs[0].weight.grad = torch.full_like(convs[0].weight, 1.0)  # every entry above tau
    convs[1].weight.grad = torch.zeros_like(convs[1].weight)
    convs[1].weight.grad.view(-1)[:9] = 1.0  # a quarter of 36 entries
    rec = GradientRecorder(tau=1e-3)
    rec.record(convs)
    rec.record(convs)
    rec.finish_task()
    share = rec.table("share")
    assert share.shape == (2, 1)
    assert share[0, 0] == pytest.approx(1.0) and share[1, 0] == pytest.approx(0.25)
    assert rec.table("relative")[0, 0] > 0
    assert GradientRecorder.from_dict(rec.to_dict()).table("share").tolist() == share.tolist()


def test_stable_block_is_chosen():
    # layers x tasks: layers 3-5 low and flat, layers 0-2 high and jumpy
    table = np.array([[0.9, 0.2, 0.8], [0.7, 0.3, 0.9], [0.6, 0.5, 0.2],
                      [0.10, 0.11, 0.10], [0.05, 0.06, 0.05], [0.08, 0.07, 0.08]])
    scores = stability_scores(table)
    assert choose_block(scores, k=3) == [3, 4, 5]
    assert choose_block(scores, k=2) in ([3, 4], [4, 5])


def test_parameter_budget_limits_the_block():
    scores = np.array([0.1, 0.2, 0.3, 1.0])
    params = [10, 10, 100, 10]
    assert choose_block(scores, layer_params=params, param_budget=25) == [0, 1]
    with pytest.raises(ValueError):
        choose_block(scores, layer_params=params, param_budget=5)
