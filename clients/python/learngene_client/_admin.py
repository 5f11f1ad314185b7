"""`learngene serve | api | worker | migrate | keys`: the commands that run a service on this machine.

They need the server package (`pip install -e .` in a checkout of the service); with the client alone they
say so and exit 1. The server is imported only when one of them runs, so HTTP commands start fast and the
client installs without torch. What they do lives in service/cli.py.
"""
from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

INSTALL_HINT = ("needs the Learngene server, which is not installed here ({reason}). Install it from a checkout of "
                "the service: `pip install -e .` (or `make install`), or use its Docker image.")

DataDir = Annotated[Path | None, typer.Option(
    help="the data folder (registry, artifacts, broker)",
    show_default="LEARNGENE_DATA_DIR, else the nearest ./var holding a registry from here up, else ./var")]

keys_app = typer.Typer(help="API keys (local admin: acts on this machine's registry, not over HTTP).",
                       no_args_is_help=True)


def _server(command: str):
    """service.cli, or exit 1 with how to install it."""
    try:
        import service.cli as server
    except ImportError as e:
        typer.echo(f"error: `learngene {command}` " + INSTALL_HINT.format(reason=e), err=True)
        raise typer.Exit(1) from None
    return server


def _settings(data_dir: Path | None, port: int | None = None, host: str | None = None):
    # Through the environment, so a worker process started by the service sees the same settings.
    for name, value in (("LEARNGENE_DATA_DIR", data_dir), ("LEARNGENE_PORT", port), ("LEARNGENE_HOST", host)):
        if value is not None:
            os.environ[name] = str(value)
    from service.settings import Settings

    return Settings()


Port = Annotated[int | None, typer.Option(help="HTTP port", show_default="LEARNGENE_PORT or 8000")]
Host = Annotated[str | None, typer.Option(help="address to listen on", show_default="LEARNGENE_HOST or 127.0.0.1")]


def serve(port: Port = None, data_dir: DataDir = None, host: Host = None) -> None:
    """Start the embedded service: migrations, one worker process and the API (Ctrl+C stops both, status 0)."""
    server = _server("serve")
    server.serve(_settings(data_dir, port, host))


def api(port: Port = None, data_dir: DataDir = None, host: Host = None) -> None:
    """Migrations, then the API alone (production: workers run as `learngene worker`)."""
    server = _server("api")
    server.api(_settings(data_dir, port, host))


def worker(ctx: typer.Context, data_dir: DataDir = None) -> None:
    """A Celery worker with the service settings; further options go to `celery worker` (-Q grow -c 1 -n w1@%h).

    Queues and concurrency default to LEARNGENE_WORKER_QUEUES (grow,individuals) and
    LEARNGENE_WORKER_CONCURRENCY (1). One process per GPU: give each its own CUDA_VISIBLE_DEVICES."""
    server = _server("worker")
    server.worker(_settings(data_dir), list(ctx.args))


def migrate(data_dir: DataDir = None) -> None:
    """Apply the database migrations (a no-op when the registry is current)."""
    server = _server("migrate")
    server.migrate(_settings(data_dir))


class Scope(str, Enum):
    read = "read"
    write = "write"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@keys_app.command("create")
def keys_create(scope: Annotated[Scope, typer.Option(help="read: predictions; write: uploads and cancels too")],
                name: Annotated[str, typer.Option(help="a note saying who or what uses the key")] = "",
                data_dir: DataDir = None) -> None:
    """Make an API key and print it (once: only its hash is stored)."""
    server = _server("keys")
    from service.auth import create_key

    try:
        with server.registry_session(_settings(data_dir)) as session:
            token, row = create_key(session, scope.value, name=name)
            session.commit()
    except LookupError as e:
        raise _fail(str(e)) from None
    typer.echo(f"created API key {row.id} (scope {row.scope}, name {row.name!r}). It is shown only now:")
    typer.echo(token)


@keys_app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    """Every key: id, scope, active or revoked, created, name (never the tokens)."""
    server = _server("keys")
    from learngene_client import _render as render
    from learngene_client.cli import _print

    table = render.columns("id", "scope", "state", "created", "name")
    try:
        with server.registry_session(_settings(data_dir)) as session:
            for row in server.list_keys(session):
                table.add_row(str(row.id), row.scope, "revoked" if row.revoked_at else "active",
                              render.when(row.created_at), row.name)
    except LookupError as e:
        raise _fail(str(e)) from None
    _print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: int, data_dir: DataDir = None) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    server = _server("keys")
    try:
        with server.registry_session(_settings(data_dir)) as session:
            row = server.revoke_key(session, key_id)
    except LookupError as e:
        raise _fail(str(e)) from None
    if row is None:
        raise _fail(f"no API key {key_id}")
    typer.echo(f"revoked API key {row.id}")


def install(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("api")(api)
    app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(worker)
    app.command("migrate")(migrate)
    app.add_typer(keys_app, name="keys")
