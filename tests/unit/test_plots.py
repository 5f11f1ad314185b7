"""service/plots.py on synthetic data: labelled axes, the right tick labels, the chosen block marked, PNGs
that decode. Pure functions, no app or registry."""
from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.patches import Rectangle
from PIL import Image

from service import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TASKS = ["pets", "deer", "bugs"]
SHARE = np.random.default_rng(0).random((6, 3)).tolist()
SCORES = [0.3, 0.1, 0.12, 0.15, 0.5, 0.6]
HISTORY = [{"epoch": e, "loss": 2.0 / e, "accuracy": min(1.0, 0.2 * e)} for e in range(1, 6)]


def decoded(png: bytes) -> Image.Image:
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def tick_texts(labels) -> list[str]:
    return [t.get_text() for t in labels]


def test_heatmap_axes_ticks_and_chosen_block():
    fig = plots.gradient_heatmap_figure(SHARE, SCORES, chosen=[1, 2, 3], task_names=TASKS)
    heat, bars = fig.axes[0], [a for a in fig.axes if a.get_title() == "per-layer stability"][0]
    assert tick_texts(heat.get_xticklabels()) == TASKS
    assert tick_texts(heat.get_yticklabels()) == [f"conv{i}" for i in range(6)]
    assert heat.get_xlabel() and heat.get_ylabel() and heat.get_title()
    assert "lower = more stable" in bars.get_xlabel()
    outlines = [p for p in heat.patches if isinstance(p, Rectangle) and p.get_gid() == plots.CHOSEN_BLOCK_GID]
    assert len(outlines) == 1
    assert outlines[0].get_y() == pytest.approx(0.5) and outlines[0].get_height() == 3  # rows conv1..conv3
    assert "conv1, conv2, conv3" in fig.get_suptitle()
    assert len(fig.axes) == 3  # heatmap, its colour bar, the stability bars
    colours = [tuple(b.get_facecolor()) for b in bars.patches]
    assert colours[1] == colours[2] == colours[3] != colours[0]  # chosen bars stand out


def test_heatmap_with_relative_panel_and_split_block():
    fig = plots.gradient_heatmap_figure(SHARE, SCORES, chosen=[0, 1, 4], task_names=TASKS,
                                        relative=(np.array(SHARE) * 3).tolist())
    titled = {a.get_title() for a in fig.axes}
    assert {"share of |dL/dW| > tau", "mean relative gradient", "per-layer stability"} <= titled
    heat = fig.axes[0]
    outlines = [p for p in heat.patches if p.get_gid() == plots.CHOSEN_BLOCK_GID]
    assert sorted((p.get_y(), p.get_height()) for p in outlines) == [(-0.5, 2), (3.5, 1)]


def test_heatmap_pads_missing_task_names():
    fig = plots.gradient_heatmap_figure(SHARE, SCORES, chosen=[1], task_names=["pets"])
    assert tick_texts(fig.axes[0].get_xticklabels()) == ["pets", "task 2", "task 3"]


def test_heatmap_png_decodes():
    image = decoded(plots.gradient_heatmap(SHARE, SCORES, chosen=[1, 2, 3], task_names=TASKS))
    assert image.width > 400 and image.height > 250


def test_accuracy_matrix_with_missing_cells():
    matrix = [[0.9], [0.8, None], [float("nan"), 0.7, 0.88]]
    fig = plots.accuracy_matrix_figure(matrix, TASKS)
    ax = fig.axes[0]
    assert tick_texts(ax.get_xticklabels()) == TASKS and tick_texts(ax.get_yticklabels()) == TASKS
    assert ax.get_xlabel() == "accuracy on task" and ax.get_ylabel() == "after learning task"
    assert sorted(t.get_text() for t in ax.texts) == ["0.70", "0.80", "0.88", "0.90"]  # no text for blanks
    image = decoded(plots.accuracy_matrix(matrix, TASKS))
    assert image.width > 200 and image.height > 200


def test_training_curve_axes_and_eval_marks():
    history = [{**h, "eval_accuracy": 0.1 * h["epoch"]} for h in HISTORY]
    fig = plots.training_curve_figure(history, eval_accuracy=0.75)
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_xlabel() == "epoch" and loss_ax.get_ylabel() == "training loss"
    assert acc_ax.get_ylabel() == "accuracy"
    labels = {line.get_label() for line in loss_ax.lines + acc_ax.lines}
    assert {"loss", "train accuracy", "eval accuracy", "final eval accuracy 0.75"} <= labels
    assert any(list(line.get_ydata()) == [0.75, 0.75] for line in acc_ax.lines)  # the dashed final line
    assert decoded(plots.training_curve(history, eval_accuracy=0.75)).width > 300


def test_training_curve_without_eval():
    fig = plots.training_curve_figure(HISTORY)
    labels = {line.get_label() for line in fig.axes[0].lines + fig.axes[1].lines}
    assert labels == {"loss", "train accuracy"}


def test_parameters_over_versions_marks_growth():
    fig = plots.parameters_over_versions_figure([1, 2, 3], [1000, 1000, 1500], TASKS)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "version" and ax.get_ylabel() == "parameters"
    grew = [line for line in ax.lines if line.get_label() == "grew"]
    assert len(grew) == 1 and list(grew[0].get_xdata()) == [3]
    assert {t.get_text() for t in ax.texts} >= {"pets", "deer", "bugs", "+500"}
    assert decoded(plots.parameters_over_versions([1, 2, 3], [1000, 1000, 1500], TASKS)).height > 200


@pytest.mark.parametrize("render", [
    lambda: plots.gradient_heatmap([], [], chosen=[]),
    lambda: plots.accuracy_matrix([]),
    lambda: plots.training_curve([]),
    lambda: plots.parameters_over_versions([], []),
])
def test_empty_data_renders_a_message(render):
    assert decoded(render()).width > 100
