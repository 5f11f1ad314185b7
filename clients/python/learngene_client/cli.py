"""`learngene`: drive a Learngene service from the shell.

    learngene tasks add task1.npz --epochs 10 --wait   # grow the collective, with a live progress bar
    learngene learngenes list
    learngene learngenes alias set champion 3          # a name clients can use instead of the id
    learngene individuals create support.npz --eval query.npz --learngene champion --wait
    learngene predict 1 images.npz
    learngene individuals download 1 --format onnx     # model.onnx + its model card
    learngene jobs list --json                         # raw JSON instead of tables (before or after the command)

    learngene serve | api | worker | migrate | keys    # run a service: need the server package installed

--url / LEARNGENE_URL and --key / LEARNGENE_API_KEY say which service and which key. An API error or an
unreachable service prints one line on stderr (`error: 422 Invalid dataset: ...`) and exits with 1; so
does a job that failed or was cancelled under --wait or `jobs watch`. Off a terminal, tables print one
row per line at full width (for grep and pipes).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel
from rich.console import Console, Group
from typer.core import TyperGroup

from learngene_client import _admin, _render as render
from learngene_client._client import Client
from learngene_client._errors import ApiError, LearngeneError
from learngene_client.models import JobPublic, Page


class JsonAnywhere(TyperGroup):
    """`--json` is a global option, accepted before or after the command (`learngene jobs list --json`)."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)
        if "--json" in args[:end]:
            args = ["--json", *[a for a in args[:end] if a != "--json"], *args[end:]]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=JsonAnywhere,
                  help="Drive a Learngene service: tasks, learngenes, individuals, predictions, jobs; run one.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]})
tasks_app = typer.Typer(help="Upload tasks that grow a collective.", no_args_is_help=True)
learngenes_app = typer.Typer(help="Browse the learngene catalog.", no_args_is_help=True)
individuals_app = typer.Typer(help="Order and inspect few-shot individual models.", no_args_is_help=True)
jobs_app = typer.Typer(help="Follow and cancel jobs.", no_args_is_help=True)
collectives_app = typer.Typer(help="Collectives: their versions, growth and accuracy.", no_args_is_help=True)
for sub, name in ((collectives_app, "collectives"), (tasks_app, "tasks"), (learngenes_app, "learngenes"),
                  (individuals_app, "individuals"), (jobs_app, "jobs")):
    app.add_typer(sub, name=name)

# How commands get their client; tests swap it for one over the in-process app.
client_factory: Callable[[str | None, str | None], Client] = lambda url, key: Client(url, key)


@dataclass
class Options:
    url: str | None
    key: str | None
    json: bool


@app.callback()
def options(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(envvar="LEARNGENE_URL", show_default="http://127.0.0.1:8000",
                                            help="the service")] = None,
    key: Annotated[str | None, typer.Option(envvar="LEARNGENE_API_KEY", show_default="none",
                                            help="API key for uploads and predictions")] = None,
    json: Annotated[bool, typer.Option("--json", help="print the raw result JSON instead of tables "
                                                      "(before or after the command)")] = False,
) -> None:
    ctx.obj = Options(url=url, key=key, json=json)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@contextmanager
def _client(ctx: typer.Context) -> Iterator[Client]:
    """The client for this invocation; every error it raises becomes one line on stderr and exit code 1."""
    try:
        with client_factory(ctx.obj.url, ctx.obj.key) as client:
            yield client
    except ApiError as e:
        if e.status == 401 and not ctx.obj.key:
            raise _fail(f"{e} - this needs an API key: set LEARNGENE_API_KEY=<key> or pass --key <key> "
                        "(make one with: learngene keys create --scope write)") from None
        raise _fail(str(e)) from None
    except LearngeneError as e:
        raise _fail(str(e)) from None
    except OSError as e:  # an input file that cannot be read
        raise _fail(f"{e.strerror or e}: {e.filename}" if e.filename else str(e)) from None


def _console() -> Console:
    """Rich output on a terminal; elsewhere one row per line, never wrapped (pipes, grep, logs)."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=100_000, soft_wrap=False)
    return console


def _print(renderable: object) -> None:
    console = _console()
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    typer.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def _show(ctx: typer.Context, result: BaseModel | list[BaseModel], table: Callable[[], object]) -> None:
    """Print `result` as JSON under --json, else the rich rendering `table()` makes of it."""
    if ctx.obj.json:
        if isinstance(result, list):
            typer.echo("[" + ",\n".join(r.model_dump_json(indent=2) for r in result) + "]")
        else:
            typer.echo(result.model_dump_json(indent=2))
        return
    _print(table())


OutputPath = Annotated[Path | None, typer.Option("--output", "-o", show_default="<kind>-<id>.<format> here",
                                                 help="where to save the model")]
Limit = Annotated[int | None, typer.Option(help="items per page", show_default="the service's page size (50)")]
Cursor = Annotated[str | None, typer.Option(help="the next page's cursor, from the previous page",
                                            show_default="the first page")]
Wait = Annotated[bool, typer.Option("--wait", help="follow the job to its end with live progress")]


def _save(blob: bytes, path: Path) -> None:
    # Write beside the target, then rename: an interrupted download never leaves a truncated model file.
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(blob)
    partial.replace(path)
    typer.echo(f"saved {path} ({len(blob):,} bytes)")


def _save_with_card(blob: bytes, path: Path, card: str) -> None:
    """The model, then its model card beside it (`individual-3.onnx` + `individual-3.md`)."""
    _save(blob, path)
    card_path = path.with_suffix(".md")
    card_path.write_text(card, encoding="utf-8")
    typer.echo(f"saved {card_path} (model card)")


def _show_page(ctx: typer.Context, page: Page, table: Callable[[list], object]) -> None:
    """A list command's output: the page as JSON, or its table and how to get the next page."""
    _show(ctx, page, lambda: table(page.items))
    if not ctx.obj.json and page.next_cursor:
        _print(f"(more: --cursor {page.next_cursor})")


# ------------------------------------------------------------------------------------------- jobs


def _outcome(client: Client, job: JobPublic) -> str:
    """One line saying how a final job ended and what it made."""
    if job.status != "succeeded":
        return f"{job.status}: {job.error}" if job.error else job.status
    result = job.result or {}
    if job.kind == "task":
        lg = client.get_learngene(result["learngene_id"])
        return (f"succeeded: collective {lg.collective} v{lg.collective_version}, learngene {lg.id} "
                f"(layers {lg.layers})")
    ind = client.get_individual(result["individual_id"])
    metric = "eval accuracy" if "eval_accuracy" in ind.metrics else "train accuracy"
    value = ind.metrics.get("eval_accuracy", ind.metrics.get("train_accuracy"))
    return f"succeeded: individual {ind.id}, {metric} {render.number(value)}"


def _follow(ctx: typer.Context, client: Client, job: JobPublic | int) -> None:
    """Wait for a job with a progress display, print how it ended; exit 1 unless it succeeded."""
    if ctx.obj.json:
        final = client.wait(job)
        typer.echo(final.model_dump_json(indent=2))
    else:
        console = _console()
        with render.JobProgressView(console) as view:
            final = client.wait(job, on_progress=view)
        line = _outcome(client, final)
        if final.status == "succeeded":
            console.print(line, soft_wrap=True)
        else:
            typer.echo(line, err=True)
    if final.status != "succeeded":
        raise typer.Exit(1)


def _submitted(ctx: typer.Context, client: Client, job: JobPublic, wait: bool) -> None:
    if wait:
        _follow(ctx, client, job)
    elif ctx.obj.json:
        typer.echo(job.model_dump_json(indent=2))
    else:
        _print(f"job {job.id} {job.status} ({job.kind}); follow it with: learngene jobs watch {job.id}")


@jobs_app.command("list")
def jobs_list(ctx: typer.Context,
              status: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed or cancelled",
                                                         show_default="all")] = None,
              kind: Annotated[str | None, typer.Option(help="task or individual", show_default="both")] = None,
              limit: Limit = None, cursor: Cursor = None) -> None:
    """Jobs, newest first."""
    with _client(ctx) as client:
        page = client.list_jobs(status=status, kind=kind, limit=limit, cursor=cursor)
    _show_page(ctx, page, render.jobs_table)


@jobs_app.command("show")
def jobs_show(ctx: typer.Context, job_id: int) -> None:
    """One job: kind, status, progress, result or error, worker, times."""
    with _client(ctx) as client:
        job = client.get_job(job_id)
    _show(ctx, job, lambda: render.fields([
        ("job", f"{job.id} ({job.kind})"), ("status", job.status + (" (cancel requested)" if job.cancel_requested
                                                                    and job.status == "running" else "")),
        ("progress", render.progress_line(job)), ("result", ", ".join(f"{k} {v}" for k, v in (job.result or {}).items())
                                                  or None),
        ("error", job.error), ("attempts", job.attempts), ("worker", job.worker),
        ("created", render.when(job.created_at)), ("started", render.when(job.started_at)),
        ("finished", render.when(job.finished_at)),
    ]))


@jobs_app.command("watch")
def jobs_watch(ctx: typer.Context, job_id: int) -> None:
    """Follow a job to its end (live progress), then print its outcome."""
    with _client(ctx) as client:
        _follow(ctx, client, job_id)


@jobs_app.command("cancel")
def jobs_cancel(ctx: typer.Context, job_id: int) -> None:
    """Cancel a job: a queued one at once, a running one at its next training step."""
    with _client(ctx) as client:
        job = client.cancel_job(job_id)
    _show(ctx, job, lambda: f"job {job.id}: {job.status}" + (" (cancel requested)" if job.status == "running" else ""))


# ------------------------------------------------------------------------------------------- collectives


@collectives_app.command("list")
def collectives_list(ctx: typer.Context) -> None:
    """Every collective: input spec, preset, newest version."""
    with _client(ctx) as client:
        collectives = client.list_collectives()
    _show(ctx, collectives, lambda: render.collectives_table(collectives))


@collectives_app.command("show")
def collectives_show(ctx: typer.Context, name: str) -> None:
    """One collective and its versions: parameters, widths, classes, average accuracy, task, learngene."""
    with _client(ctx) as client:
        c = client.get_collective(name)

    def view():
        head = render.fields([("collective", c.name), ("input", f"{c.channels}×{c.size}×{c.size}"),
                              ("preset", c.preset), ("head", f"v{c.head}" if c.head else "no task yet")])
        return Group(head, render.versions_table(c.versions)) if c.versions else head

    _show(ctx, c, view)


@collectives_app.command("create")
def collectives_create(ctx: typer.Context, name: str,
                       channels: Annotated[int, typer.Option(help="1 (gray) or 3 (RGB)")],
                       size: Annotated[int, typer.Option(help="input side in pixels; images are resized to it")],
                       preset: Annotated[str, typer.Option(
                           help="small, wide (twice small's widths, for GPU workers), paper or tiny")] = "small",
                       seed: Annotated[int, typer.Option(help="random seed of its initial weights")] = 0) -> None:
    """Fix a new collective's input before its first task (otherwise the first upload decides)."""
    with _client(ctx) as client:
        c = client.create_collective(name, channels, size, preset=preset, seed=seed)
    _show(ctx, c, lambda: f"created collective {c.name} ({c.channels}×{c.size}×{c.size}, preset {c.preset})")


# ------------------------------------------------------------------------------------------- tasks


@tasks_app.command("add")
def tasks_add(ctx: typer.Context, file: Path,
              name: Annotated[str | None, typer.Option(help="the task's name", show_default="the file name")] = None,
              collective: Annotated[str | None, typer.Option(help="the collective that learns it",
                                                             show_default="the service's default collective")] = None,
              epochs: Annotated[int | None, typer.Option(help="training epochs",
                                                         show_default="the service's default")] = None,
              wait: Wait = False) -> None:
    """Upload a labelled dataset (.npz or .zip of class folders): the collective learns it and grows."""
    with _client(ctx) as client:
        job = client.create_task(file, name=name, collective=collective, epochs=epochs)
        _submitted(ctx, client, job, wait)


@tasks_app.command("list")
def tasks_list(ctx: typer.Context,
               collective: Annotated[str | None, typer.Option(help="only this collective's tasks",
                                                              show_default="all")] = None,
               status: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed or cancelled",
                                                          show_default="all")] = None,
               limit: Limit = None, cursor: Cursor = None) -> None:
    """Tasks, newest first."""
    with _client(ctx) as client:
        page = client.list_tasks(collective=collective, status=status, limit=limit, cursor=cursor)
    _show_page(ctx, page, render.tasks_table)


@tasks_app.command("show")
def tasks_show(ctx: typer.Context, task_id: int) -> None:
    """One task: classes, what was new, the open-world report, accuracy after training."""
    with _client(ctx) as client:
        t = client.get_task(task_id)
    counts = ", ".join(f"{c} {n}" for c, n in zip(t.classes, t.class_counts))
    _show(ctx, t, lambda: render.fields([
        ("task", f"{t.id} {t.name}"), ("status", t.status),
        ("collective", f"{t.collective}@{t.collective_version}" if t.collective_version else t.collective),
        ("classes", counts), ("new classes", render.short_list(t.new_classes or [])),
        ("input", f"{t.channels}×{t.size}×{t.size}, {t.num_samples} samples"),
        ("accuracy", render.number(t.accuracy)),
        ("accuracy row", render.short_list(render.number(a) for a in (t.accuracy_row or []))),
        ("learngene", t.learngene_id), ("job", t.job_id), ("created", render.when(t.created_at)),
    ]))


# ------------------------------------------------------------------------------------------- learngenes


@learngenes_app.command("list")
def learngenes_list(ctx: typer.Context,
                    collective: Annotated[str | None, typer.Option(help="only this collective's learngenes",
                                                                   show_default="all")] = None,
                    version: Annotated[int | None, typer.Option(help="a collective version number",
                                                                show_default="all")] = None,
                    method: Annotated[str | None, typer.Option(help="how it was chosen: gradient or validated",
                                                               show_default="all")] = None,
                    max_parameters: Annotated[int | None, typer.Option(help="at most this many parameters",
                                                                       show_default="no limit")] = None,
                    limit: Limit = None, cursor: Cursor = None) -> None:
    """The learngene catalog, newest first."""
    with _client(ctx) as client:
        page = client.list_learngenes(collective=collective, collective_version=version, method=method,
                                      max_parameters=max_parameters, limit=limit, cursor=cursor)
    _show_page(ctx, page, render.learngenes_table)


@learngenes_app.command("show")
def learngenes_show(ctx: typer.Context, learngene_id: int) -> None:
    """One learngene: its layers, stability scores, lineage."""
    with _client(ctx) as client:
        lg = client.get_learngene(learngene_id)
    _show(ctx, lg, lambda: render.fields([
        ("learngene", lg.id), ("collective", f"{lg.collective}@{lg.collective_version}"), ("method", lg.method),
        ("layers", lg.layers), ("aliases", ", ".join(lg.aliases) or None),
        ("scores", render.short_list(render.number(s, ".3f") for s in lg.scores)),
        ("parameters", f"{lg.parameters:,}"), ("input", f"{lg.channels}×{lg.size}×{lg.size}"),
        ("lineage", f"parent v{lg.lineage.parent_version or '-'}, task {lg.lineage.task_id} "
                    f"({lg.lineage.task_name}), {lg.lineage.tasks_seen} task(s) seen"),
        ("candidates", render.candidates(lg.candidates, lg.layers)), ("sha256", lg.sha256),
        ("created", render.when(lg.created_at)),
    ]))


@learngenes_app.command("download")
def learngenes_download(ctx: typer.Context, learngene_id: int, output: OutputPath = None) -> None:
    """Save a learngene's weights (safetensors, card metadata in its header) and its model card beside them."""
    with _client(ctx) as client:
        blob, card = client.learngene_weights(learngene_id, card=True), client.learngene_card(learngene_id)
    _save_with_card(blob, output or Path(f"learngene-{learngene_id}.safetensors"), card)


@learngenes_app.command("card")
def learngenes_card(ctx: typer.Context, learngene_id: int) -> None:
    """Print a learngene's model card: Markdown with YAML metadata (lineage, recipe, metrics, versions)."""
    with _client(ctx) as client:
        typer.echo(client.learngene_card(learngene_id), nl=False)


alias_app = typer.Typer(help="Names for learngenes (`champion`), usable instead of ids.", no_args_is_help=True)
learngenes_app.add_typer(alias_app, name="alias")


@alias_app.command("set")
def alias_set(ctx: typer.Context, name: str, learngene_id: int) -> None:
    """Point NAME at a learngene (moves the name if it points elsewhere; the move is recorded)."""
    with _client(ctx) as client:
        alias = client.set_alias(name, learngene_id)
    _show(ctx, alias, lambda: f"alias {alias.name} -> learngene {alias.learngene_id}")


@alias_app.command("show")
def alias_show(ctx: typer.Context, name: str) -> None:
    """Which learngene NAME points at."""
    with _client(ctx) as client:
        alias = client.get_alias(name)
    _show(ctx, alias, lambda: f"alias {alias.name} -> learngene {alias.learngene_id} (since "
                              f"{render.when(alias.updated_at)})")


@alias_app.command("delete")
def alias_delete(ctx: typer.Context, name: str) -> None:
    """Remove the name (the learngene stays)."""
    with _client(ctx) as client:
        client.delete_alias(name)
    typer.echo(f"deleted alias {name}")


# ------------------------------------------------------------------------------------------- individuals


class Init(str, Enum):
    auto = "auto"
    learngene = "learngene"
    scratch = "scratch"
    instant = "instant"
    probe = "probe"


@individuals_app.command("create")
def individuals_create(
    ctx: typer.Context, support: Path,
    eval_file: Annotated[Path | None, typer.Option("--eval", help="labelled query set: reports eval accuracy")] = None,
    learngene: Annotated[str | None, typer.Option(help="learngene id, or an alias such as champion",
                                                  show_default="the newest learngene")] = None,
    init: Annotated[Init, typer.Option(metavar="INIT", help="auto, learngene, scratch, instant or probe; auto picks "
                                       "among the other four by cross-validation")] = Init.auto,
    epochs: Annotated[int | None, typer.Option(help="training epochs", show_default="the service's default")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed of training", show_default="0")] = None,
    max_parameters: Annotated[int | None, typer.Option(help="build the largest model within this many parameters",
                                                       show_default="today's size")] = None,
    wait: Wait = False,
) -> None:
    """Train a few-shot individual model on a labelled support set, built on a learngene."""
    by_id = learngene is not None and learngene.isdigit()
    with _client(ctx) as client:
        job = client.create_individual(support, eval_file=eval_file, learngene_id=int(learngene) if by_id else None,
                                       learngene_alias=None if by_id else learngene, init=init.value,
                                       epochs=epochs, seed=seed, max_parameters=max_parameters)
        _submitted(ctx, client, job, wait)


@individuals_app.command("list")
def individuals_list(ctx: typer.Context,
                     learngene: Annotated[int | None, typer.Option(help="only those built from this learngene id",
                                                                   show_default="all")] = None,
                     limit: Limit = None, cursor: Cursor = None) -> None:
    """Individual models, newest first."""
    with _client(ctx) as client:
        page = client.list_individuals(learngene_id=learngene, limit=limit, cursor=cursor)
    _show_page(ctx, page, render.individuals_table)


@individuals_app.command("show")
def individuals_show(ctx: typer.Context, individual_id: int) -> None:
    """One individual model: classes, shots, accuracy, training options."""
    with _client(ctx) as client:
        ind = client.get_individual(individual_id)
    _show(ctx, ind, lambda: render.fields([
        ("individual", ind.id), ("learngene", ind.learngene_id or "none (scratch)"), ("init", ind.init),
        ("classes", ", ".join(f"{c} ({ind.shots.get(c, 0)} shots)" for c in ind.classes)),
        ("parameters", f"{ind.parameters:,}"), ("input", f"{ind.channels}×{ind.size}×{ind.size}"),
        ("train accuracy", render.number(ind.metrics.get("train_accuracy"))),
        ("eval accuracy", render.number(ind.metrics.get("eval_accuracy"))),
        ("options", ", ".join(f"{k} {v}" for k, v in ind.options.items() if v is not None)),
        ("created", render.when(ind.created_at)),
    ]))


@individuals_app.command("delete")
def individuals_delete(ctx: typer.Context, individual_id: int) -> None:
    """Delete an individual model and its weights (needs a write key); its job stays."""
    with _client(ctx) as client:
        client.delete_individual(individual_id)
    typer.echo(f"deleted individual {individual_id}")


class Format(str, Enum):
    safetensors = "safetensors"
    onnx = "onnx"


@individuals_app.command("download")
def individuals_download(
    ctx: typer.Context, individual_id: int, output: OutputPath = None,
    format: Annotated[Format, typer.Option("--format", help="safetensors (PyTorch weights) or onnx (a runnable "
                                                            "graph: softmax included)")] = Format.safetensors,
) -> None:
    """Save an individual model (safetensors weights or an ONNX graph) and its model card beside it."""
    with _client(ctx) as client:
        if format is Format.onnx:
            blob = client.individual_onnx(individual_id)
        else:
            blob = client.individual_weights(individual_id, card=True)
        card = client.individual_card(individual_id)
    _save_with_card(blob, output or Path(f"individual-{individual_id}.{format.value}"), card)


@individuals_app.command("card")
def individuals_card(ctx: typer.Context, individual_id: int) -> None:
    """Print an individual's model card: Markdown with YAML metadata (base learngene, recipe, metrics)."""
    with _client(ctx) as client:
        typer.echo(client.individual_card(individual_id), nl=False)


@app.command("predict")
def predict(ctx: typer.Context, individual_id: int, file: Path) -> None:
    """Label images with an individual model: an .npz with `x`, or one image file."""
    with _client(ctx) as client:
        result = client.predict(individual_id, file)

    def table():
        rows = render.columns("#", "label", "probability", "unknown")
        for i, p in enumerate(result.predictions):
            rows.add_row(str(i), p.label, render.number(p.probabilities.get(p.label), ".3f"),
                         "yes" if p.unknown else "")
        return rows

    _show(ctx, result, table)


# ------------------------------------------------------------------------------------------- running a service

_admin.install(app)


def main() -> None:
    app(prog_name="learngene")


if __name__ == "__main__":
    main()
