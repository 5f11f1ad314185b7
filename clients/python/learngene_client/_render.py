"""How the command line shows results: compact rich tables, field lists, job progress and job outcomes.

    console.print(learngenes_table(page.items))
    with JobProgressView(console) as view: job = client.wait(job, on_progress=view)
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from learngene_client.models import (
    CollectivePublic,
    CollectiveVersionPublic,
    IndividualPublic,
    JobPublic,
    LearngenePublic,
    TaskPublic,
)


def when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else "-"


def number(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def short_list(values: Iterable[Any], most: int = 6) -> str:
    values = [str(v) for v in values]
    return ", ".join(values[:most]) + (f", … (+{len(values) - most})" if len(values) > most else "")


def columns(*names: str) -> Table:
    """An empty borderless table with these column headers (ids and counts right-aligned)."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in names:
        table.add_column(name, justify="right" if name in ("id", "#", "parameters") else "left")
    return table


def tasks_table(tasks: list[TaskPublic]) -> Table:
    table = columns("id", "name", "collective", "status", "classes", "accuracy", "learngene", "created")
    for t in tasks:
        version = f"{t.collective}@{t.collective_version}" if t.collective_version else t.collective
        table.add_row(str(t.id), t.name, version, t.status, short_list(t.classes), number(t.accuracy),
                      str(t.learngene_id or "-"), when(t.created_at))
    return table


def learngenes_table(learngenes: list[LearngenePublic]) -> Table:
    table = columns("id", "collective", "method", "layers", "parameters", "created")
    for lg in learngenes:
        table.add_row(str(lg.id), f"{lg.collective}@{lg.collective_version}", lg.method,
                      short_list(lg.layers), f"{lg.parameters:,}", when(lg.created_at))
    return table


def individuals_table(individuals: list[IndividualPublic]) -> Table:
    table = columns("id", "learngene", "init", "classes", "eval acc", "train acc", "parameters", "created")
    for ind in individuals:
        table.add_row(str(ind.id), str(ind.learngene_id or "-"), ind.init, short_list(ind.classes),
                      number(ind.metrics.get("eval_accuracy")), number(ind.metrics.get("train_accuracy")),
                      f"{ind.parameters:,}", when(ind.created_at))
    return table


def collectives_table(collectives: list[CollectivePublic]) -> Table:
    table = columns("name", "input", "preset", "seed", "head", "created")
    for c in collectives:
        table.add_row(c.name, f"{c.channels}×{c.size}×{c.size}", c.preset, str(c.seed),
                      f"v{c.head}" if c.head else "-", when(c.created_at))
    return table


def versions_table(versions: list[CollectiveVersionPublic]) -> Table:
    """One row per version (widths as conv0/conv1/...); `avg acc` is the mean of its accuracy-matrix row."""
    table = columns("version", "parameters", "widths", "classes", "avg acc", "task", "learngene")
    table.columns[2].no_wrap = True  # every width matters: one line, never cut to "…"
    for v in versions:
        last = [a for a in (v.accuracy_matrix[-1] if v.accuracy_matrix else []) if a is not None]
        average = sum(last) / len(last) if last else None
        table.add_row(f"v{v.number}", f"{v.parameters:,}", "/".join(map(str, v.widths)), str(len(v.label_space)),
                      number(average), str(v.task_id or "-"), str(v.learngene_id or "-"))
    return table


def jobs_table(jobs: list[JobPublic]) -> Table:
    table = columns("id", "kind", "status", "stage", "done", "result", "created")
    for job in jobs:
        result = ", ".join(f"{k} {v}" for k, v in (job.result or {}).items()) or (job.error or "-")
        table.add_row(str(job.id), job.kind, job.status, job.progress.stage, f"{job.progress.fraction:.0%}",
                      result, when(job.created_at))
    return table


def candidates(blocks: list[dict], chosen: list[int]) -> str:
    """Validated candidates as `[0, 1, 2] 0.982 (chosen), [1, 2, 3] 0.958, ...`; `none` for gradient-only."""
    if not blocks:
        return "none (chosen from gradient statistics alone)"
    ranked = sorted(blocks, key=lambda c: -(c.get("accuracy") or 0))
    return ", ".join(f"{c.get('layers')} {number(c.get('accuracy'), '.3f')}"
                     + (" (chosen)" if c.get("layers") == chosen else "") for c in ranked)


def fields(rows: Iterable[tuple[str, Any]]) -> Table:
    """A two-column list of a resource's fields (`show` commands)."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, "-" if value is None else str(value))
    return table


def progress_detail(job: JobPublic) -> str:
    """Epoch and loss in words, when the job reports them: `epoch 3/10 loss 0.4312`."""
    p = job.progress
    parts = []
    if p.epoch is not None and p.epochs:
        parts.append(f"epoch {p.epoch}/{p.epochs}")
    if p.loss is not None:
        parts.append(f"loss {p.loss:.4f}")
    return " ".join(parts)


def stage(job: JobPublic) -> str:
    """What the job is doing: its stage while running (`train`, `loading` ...), else its status."""
    return job.progress.stage if job.status == "running" else job.status


def progress_line(job: JobPublic) -> str:
    """`job 4 running: train epoch 3/10 loss 0.4312 (30%)`, `job 4 succeeded (100%)`."""
    head = f"job {job.id} {job.status}"
    if job.status == "running":
        head = " ".join(filter(None, (f"{head}: {job.progress.stage}", progress_detail(job))))
    return f"{head} ({job.progress.fraction:.0%})"


class JobProgressView:
    """The `on_progress` callback of Client.wait for a command line.

    On a terminal: a live rich bar (stage as description, epoch/epochs and loss beside it, bar = fraction).
    Otherwise (logs, CI): one plain line per change, `job 4 running: train epoch 3/10 loss 0.4312 (30%)`.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self.last_line = ""
        self.progress = Progress(TextColumn("[bold]{task.description:<12}"), BarColumn(), TaskProgressColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console,
                                 transient=False)
        self.bar = None

    def __enter__(self) -> JobProgressView:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.live:
            self.progress.stop()

    def __call__(self, job: JobPublic) -> None:
        if not self.live:
            line = progress_line(job)
            if line != self.last_line:
                self.console.print(line, highlight=False, soft_wrap=True)
                self.last_line = line
            return
        if self.bar is None:
            self.bar = self.progress.add_task(stage(job), total=1.0, detail="")
        self.progress.update(self.bar, description=stage(job), completed=job.progress.fraction,
                             detail=progress_detail(job))
