"""Plots of registry data: pure functions from plain lists and numbers to PNG bytes.

    fig = gradient_heatmap_figure(share, scores, chosen=[1, 2, 3], task_names=["pets", "deer"])
    png = gradient_heatmap(share, scores, chosen=[1, 2, 3], task_names=["pets", "deer"])   # the same, as PNG

Every `*_figure` function returns a matplotlib Figure (tests inspect its axes); the function without the
suffix renders it to PNG bytes. Only matplotlib's object API is used (Figure + FigureCanvasAgg), never
pyplot: the API renders in a threadpool, and pyplot keeps global state that is not thread safe.
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib import colormaps
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

DPI = 100
CHOSEN = "tab:red"
CHOSEN_BLOCK_GID = "chosen-block"  # the outline around the learngene's rows; tests look it up by this id


def to_png(fig: Figure, dpi: int = DPI) -> bytes:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)  # attaches itself to fig: savefig renders with Agg, no backend switching
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _names(names: Sequence[str] | None, count: int, fallback: str) -> list[str]:
    """`names` padded (or cut) to `count`, missing ones as e.g. "task 3"."""
    names = list(names or [])[:count]
    return names + [f"{fallback} {i + 1}" for i in range(len(names), count)]


def _empty(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _cmap(name: str) -> Colormap:
    return colormaps[name].with_extremes(bad="white")  # NaN cells (no measurement) stay blank


def _runs(layers: Sequence[int]) -> list[tuple[int, int]]:
    """Contiguous runs of sorted layer indices as (first, last) pairs: [1, 2, 4] -> [(1, 2), (4, 4)]."""
    runs: list[tuple[int, int]] = []
    for layer in sorted(set(layers)):
        if runs and layer == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], layer)
        else:
            runs.append((layer, layer))
    return runs


# ------------------------------------------------------------------------------------ gradient heatmap


def _layer_table(ax: Axes, fig: Figure, table: np.ndarray, title: str, label: str, chosen: Sequence[int],
                 task_names: list[str], layer_names: list[str], bounded: bool) -> None:
    image = ax.imshow(table, aspect="auto", cmap=_cmap("viridis"),
                      vmin=0.0 if bounded else None, vmax=1.0 if bounded else None)
    fig.colorbar(image, ax=ax, label=label, shrink=0.9)
    ax.set_title(title)
    ax.set_xlabel("task (in learning order)")
    ax.set_ylabel("conv layer")
    crowded = table.shape[1] > 3
    ax.set_xticks(range(table.shape[1]), task_names, rotation=30 if crowded else 0,
                  ha="right" if crowded else "center")
    ax.set_yticks(range(table.shape[0]), layer_names)
    for first, last in _runs(chosen):
        ax.add_patch(Rectangle((-0.5, first - 0.5), table.shape[1], last - first + 1, fill=False,
                               edgecolor=CHOSEN, linewidth=2.5, gid=CHOSEN_BLOCK_GID, clip_on=False))
    for tick in ax.get_yticklabels():
        if tick.get_text() in {layer_names[i] for i in chosen if 0 <= i < len(layer_names)}:
            tick.set_color(CHOSEN)
            tick.set_fontweight("bold")


def gradient_heatmap_figure(share: Sequence[Sequence[float]], scores: Sequence[float], chosen: Sequence[int],
                            task_names: Sequence[str] | None = None, layer_names: Sequence[str] | None = None,
                            relative: Sequence[Sequence[float]] | None = None, title: str | None = None) -> Figure:
    """Gradient statistics of a learngene's collective, layers x tasks, and the per-layer stability score.

    share: per layer (rows) and task (columns), the share of weights whose gradient exceeded tau;
    relative: optionally the mean relative gradient, drawn as a second panel; scores: stability per layer
    (lower = more stable); chosen: the layers the learngene kept, outlined in both panels.
    """
    table = np.asarray(share, dtype=float).reshape(len(share), -1) if len(share) else np.zeros((0, 0))
    rel = np.asarray(relative, dtype=float).reshape(len(relative), -1) if relative is not None and len(relative) \
        else None
    num_layers = max(table.shape[0], len(scores))
    layers = [layer_names[i] if layer_names and i < len(layer_names) else f"conv{i}" for i in range(num_layers)]
    tasks = _names(task_names, table.shape[1], "task")
    panels = 2 + (rel is not None)
    width = 4.4 * (panels - 1) + 3.0 + 0.35 * max(0, table.shape[1] - 4)  # more tasks, wider heatmaps
    fig = Figure(figsize=(width, 3.2 + 0.42 * num_layers), layout="constrained")
    axes = fig.subplots(1, panels, gridspec_kw={"width_ratios": [4] * (panels - 1) + [2.6]})
    if table.size == 0:
        _empty(axes[0], "no gradient statistics recorded")
    else:
        _layer_table(axes[0], fig, table, "share of |dL/dW| > tau", "share of weights", chosen, tasks, layers, True)
        if rel is not None:
            _layer_table(axes[1], fig, rel, "mean relative gradient", "relative gradient", chosen,
                         _names(task_names, rel.shape[1], "task"), layers, False)
    bars = axes[-1]
    values = list(scores) + [math.nan] * (num_layers - len(scores))
    kept = set(chosen)
    bars.barh(range(num_layers), values, color=[CHOSEN if i in kept else "tab:grey" for i in range(num_layers)])
    bars.set_yticks(range(num_layers), layers)
    if num_layers:
        bars.set_ylim(num_layers - 0.5, -0.5)  # conv0 on top, as in the heatmap
    bars.set_title("per-layer stability")
    bars.set_xlabel("stability score\n(lower = more stable)")
    bars.bar_label(bars.containers[0], fmt="%.2f", fontsize=7, padding=2)
    bars.margins(x=0.3)
    for i, tick in enumerate(bars.get_yticklabels()):
        if i in kept:
            tick.set_color(CHOSEN)
            tick.set_fontweight("bold")
    heading = [title] if title else []
    if chosen:
        heading.append("learngene: " + ", ".join(layers[i] for i in chosen if 0 <= i < num_layers)
                       + " (outlined in red)")
    if heading:
        fig.suptitle("\n".join(heading))
    return fig


def gradient_heatmap(*args: Any, **kwargs: Any) -> bytes:
    return to_png(gradient_heatmap_figure(*args, **kwargs))


# ------------------------------------------------------------------------------------ accuracy matrix


def _square(matrix: Sequence[Sequence[float | None]]) -> np.ndarray:
    """Ragged rows (row t has t + 1 entries) and None as a square float array with NaN where unknown."""
    width = max([len(r) for r in matrix] + [len(matrix)])
    out = np.full((len(matrix), width), np.nan)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if value is not None:
                out[i, j] = float(value)
    return out


def accuracy_matrix_figure(matrix: Sequence[Sequence[float | None]], task_names: Sequence[str] | None = None,
                           title: str | None = None) -> Figure:
    """R[t][j]: held-out accuracy on task j after learning task t. Unknown cells (None, NaN) stay blank."""
    grid = _square(matrix) if len(matrix) else np.zeros((0, 0))
    names = _names(task_names, max(grid.shape), "task")
    side = 2.8 + 0.75 * max(grid.shape + (1,))
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.subplots()
    ax.set_title(title or "accuracy matrix")
    if grid.size == 0:
        _empty(ax, "no tasks learned yet")
        return fig
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=_cmap("RdYlGn"), vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="held-out accuracy", shrink=0.85)
    for (i, j), value in np.ndenumerate(grid):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=9,
                    color="black" if 0.25 < value < 0.85 else "white")
    ax.set_xticks(range(grid.shape[1]), names[: grid.shape[1]], rotation=30, ha="right")
    ax.set_yticks(range(grid.shape[0]), names[: grid.shape[0]])
    ax.set_xlabel("accuracy on task")
    ax.set_ylabel("after learning task")
    return fig


def accuracy_matrix(*args: Any, **kwargs: Any) -> bytes:
    return to_png(accuracy_matrix_figure(*args, **kwargs))


# ------------------------------------------------------------------------------------ training curve


def training_curve_figure(history: Sequence[dict[str, Any]], eval_accuracy: float | None = None,
                          title: str | None = None) -> Figure:
    """Per-epoch loss (left axis) and train accuracy (right axis) of an individual; per-epoch eval accuracy
    when the history has it; the final eval accuracy as a dashed line with a point at the last epoch."""
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    loss_ax = fig.subplots()
    loss_ax.set_title(title or "training curve")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss", color="tab:blue")
    acc_ax = loss_ax.twinx()
    acc_ax.set_ylabel("accuracy")
    acc_ax.set_ylim(-0.02, 1.05)
    if not history:
        _empty(loss_ax, "no training history recorded")
        return fig
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]

    def series(key: str) -> list[float]:
        return [math.nan if h.get(key) is None else float(h[key]) for h in history]

    lines = loss_ax.plot(epochs, series("loss"), color="tab:blue", marker=".", label="loss")
    loss_ax.tick_params(axis="y", labelcolor="tab:blue")
    loss_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    lines += acc_ax.plot(epochs, series("accuracy"), color="tab:green", marker=".", label="train accuracy")
    if any("eval_accuracy" in h for h in history):
        lines += acc_ax.plot(epochs, series("eval_accuracy"), color="tab:orange", marker=".",
                             label="eval accuracy")
    if eval_accuracy is not None:
        acc_ax.axhline(eval_accuracy, color="tab:red", linestyle="--", linewidth=1)
        lines += acc_ax.plot([epochs[-1]], [eval_accuracy], color="tab:red", marker="*", markersize=14,
                             linestyle="none", label=f"final eval accuracy {eval_accuracy:.2f}")
    fig.legend(lines, [line.get_label() for line in lines], loc="outside lower center", ncols=len(lines), fontsize=8)
    return fig


def training_curve(*args: Any, **kwargs: Any) -> bytes:
    return to_png(training_curve_figure(*args, **kwargs))


# ------------------------------------------------------------------------------------ parameters


def parameters_over_versions_figure(numbers: Sequence[int], parameters: Sequence[int],
                                    task_names: Sequence[str | None] | None = None,
                                    title: str | None = None) -> Figure:
    """The collective's parameter count per version, each point labelled with the task that made it;
    versions where the network grew are marked."""
    fig = Figure(figsize=(max(5.5, 1.0 + 0.9 * len(numbers)), 3.8), layout="constrained")
    ax = fig.subplots()
    ax.set_title(title or "parameters per version")
    ax.set_xlabel("version")
    ax.set_ylabel("parameters")
    if not numbers:
        _empty(ax, "no versions yet")
        return fig
    names = list(task_names or [None] * len(numbers))
    ax.plot(numbers, parameters, color="tab:blue", marker="o", label="parameters")
    grew = [i for i in range(1, len(numbers)) if parameters[i] > parameters[i - 1]]
    if grew:
        ax.plot([numbers[i] for i in grew], [parameters[i] for i in grew], linestyle="none", marker="^",
                markersize=11, color=CHOSEN, label="grew")
        for i in grew:
            ax.annotate(f"+{parameters[i] - parameters[i - 1]:,}", (numbers[i], parameters[i]),
                        textcoords="offset points", xytext=(9, -6), ha="left", va="top", color=CHOSEN, fontsize=8)
    for number, count, name in zip(numbers, parameters, names):
        if name:
            ax.annotate(name, (number, count), textcoords="offset points", xytext=(0, 9), ha="center", fontsize=8)
    ax.set_xticks(list(numbers))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    ax.margins(x=0.25, y=0.2)  # room for the labels beside the first and last points
    ax.legend(loc="lower right", fontsize=8)
    return fig


def parameters_over_versions(*args: Any, **kwargs: Any) -> bytes:
    return to_png(parameters_over_versions_figure(*args, **kwargs))


# ------------------------------------------------------------------------------------ size curve


def size_curve_figure(points: dict[str, Sequence[tuple[int, float]]], title: str | None = None) -> Figure:
    """Accuracy against parameters, one line per init (or method): `points[name]` = [(parameters, accuracy)].
    Several points at one size are averaged (the line goes through the means; every point is drawn)."""
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.set_title(title or "accuracy against parameters")
    ax.set_xlabel("parameters")
    ax.set_ylabel("accuracy")
    if not any(points.values()):
        _empty(ax, "no individual with an eval accuracy yet")
        return fig
    for name, pts in sorted(points.items()):
        if not pts:
            continue
        by_size: dict[int, list[float]] = {}
        for n, acc in pts:
            by_size.setdefault(int(n), []).append(float(acc))
        xs = sorted(by_size)
        line = ax.plot(xs, [float(np.mean(by_size[x])) for x in xs], marker="o", label=name)[0]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=10, alpha=0.4, color=line.get_color())
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    return fig


def size_curve(*args: Any, **kwargs: Any) -> bytes:
    return to_png(size_curve_figure(*args, **kwargs))
