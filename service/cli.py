"""Command line: the embedded service in one command, or the parts of a production deployment.

    python -m service run        # migrations, one worker process, the API; prints the URL (make run)
    python -m service api        # migrations, then the API only (docker compose's api service)
    python -m service migrate    # migrations only
    python -m service keys create --scope write [--name ci]   # prints a new API key once
    python -m service keys list | keys revoke ID

Settings come from LEARNGENE_* variables (LEARNGENE_PORT, LEARNGENE_DATA_DIR, ...); see service/settings.py.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import jobstate
from service.app import create_app
from service.auth import SCOPES, create_key, ensure_key
from service.db import make_engine, make_sessionmaker
from service.migrate import upgrade
from service.models import ApiKey, Job, JobStatus, utcnow
from service.queue import make_celery, send_job
from service.settings import Settings

log = logging.getLogger("service")


class Server(uvicorn.Server):
    """uvicorn, announcing the URL once it really accepts connections."""

    def __init__(self, config: uvicorn.Config, banner: str) -> None:
        super().__init__(config)
        self.banner = banner

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            print(self.banner, flush=True)


def serve(settings: Settings, banner: str) -> None:
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                            timeout_graceful_shutdown=10)
    Server(config, banner).run()


def requeue_orphans(settings: Settings) -> int:
    """Embedded mode only: a job left `running` whose heartbeat stopped lost its worker (ours, which is not up
    yet) and its message (the on-disk broker removes a message once delivered), so put it back on the queue.
    Its heartbeat is watched for two beats first: a job still beating belongs to another live `serve` on
    this data folder and is left alone."""
    engine = make_engine(settings.database)
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        running = s.scalars(select(Job).where(Job.status == JobStatus.running))
        seen = {j.id: (j.attempts, j.heartbeat_at) for j in running}
    requeued: list[Job] = []
    if seen:
        time.sleep(2 * settings.job_heartbeat_s + 1)
        with sessions() as s:
            for job_id, (attempt, beat) in seen.items():
                not_since = (beat or utcnow()) + timedelta(microseconds=1)  # no heartbeat after the one seen
                if jobstate.requeue(s, job_id, attempt, "the service restarted", stale_before=not_since):
                    requeued.append(s.get(Job, job_id))
            s.commit()
    if requeued:
        celery = make_celery(settings)
        for job in requeued:
            send_job(celery, job)
        log.warning("requeued %d job(s) interrupted by the last shutdown", len(requeued))
    engine.dispose()
    return len(requeued)


class WorkerProcess:
    """The embedded worker: a `python -m workers` child, restarted if it dies, stopped with us."""

    def __init__(self, settings: Settings) -> None:
        self.env = {**os.environ, "LEARNGENE_DATA_DIR": str(settings.data_dir.resolve())}
        self.proc: subprocess.Popen | None = None
        self.stopping = threading.Event()

    def start(self) -> None:
        self.proc = self._spawn()
        threading.Thread(target=self._watch, daemon=True).start()

    def _spawn(self) -> subprocess.Popen:
        # Its own session: Ctrl+C reaches only us, and we stop the worker with one SIGTERM (warm shutdown).
        return subprocess.Popen([sys.executable, "-m", "workers", "-n", "embedded@%h"], env=self.env,
                                start_new_session=True)

    def _watch(self) -> None:
        while not self.stopping.is_set():
            code = self.proc.wait()
            if self.stopping.is_set():
                return
            log.error("the worker exited with %s; starting it again", code)
            self.stopping.wait(2)
            if not self.stopping.is_set():
                self.proc = self._spawn()

    def stop(self, timeout: float = 30) -> None:
        self.stopping.set()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # warm shutdown: the running job finishes or goes back
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def register_env_key(settings: Settings) -> None:
    """LEARNGENE_API_KEY: make sure that token is a write key (its hash is stored; it is never logged)."""
    if settings.api_key is None or not settings.api_key.get_secret_value():
        return
    engine = make_engine(settings.database)
    with make_sessionmaker(engine)() as s:
        row = ensure_key(s, settings.api_key.get_secret_value())
        s.commit()
        log.info("LEARNGENE_API_KEY is API key %s (scope %s%s)", row.id, row.scope,
                 ", REVOKED" if row.revoked_at else "")
    engine.dispose()


def auth_note(settings: Settings) -> str:
    if not settings.auth:
        return ("\n  WARNING: LEARNGENE_AUTH=off - anyone who can reach this port may upload, train and cancel. "
                "Local use only.")
    return ("\n  Uploads and other changes need an API key (Authorization: Bearer <key>). Make one with:"
            "\n      learngene keys create --scope write   (.venv/bin/learngene in a checkout)" + _data_dir_hint(settings) +
            "\n  or set LEARNGENE_API_KEY=<a secret> before starting; LEARNGENE_AUTH=off turns keys off "
            "(local use only).")


def _data_dir_hint(settings: Settings) -> str:
    if settings.database_url:
        return ""
    return f"   (with LEARNGENE_DATA_DIR={settings.data_dir} if you changed it)"


@contextmanager
def registry_session(settings: Settings) -> Iterator[Session]:
    """A session on the configured registry, migrated first: for local admin commands (API keys)."""
    upgrade(settings)
    engine = make_engine(settings.database)
    try:
        with make_sessionmaker(engine)() as s:
            yield s
    finally:
        engine.dispose()


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)).all())


def revoke_key(session: Session, key_id: int) -> ApiKey | None:
    """Revoke a key (once: a revoked key keeps its first revocation time); None if there is no such key."""
    row = session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return row


def keys_command(settings: Settings, args: argparse.Namespace) -> int:
    with registry_session(settings) as s:
        if args.action == "create":
            token, row = create_key(s, args.scope, name=args.name or "")
            s.commit()
            print(f"created API key {row.id} (scope {row.scope}, name {row.name!r}). It is shown only now:")
            print(token)
        elif args.action == "list":
            print(f"{'id':>4}  {'scope':<6} {'state':<8} {'created':<20} name")
            for row in list_keys(s):
                state = "revoked" if row.revoked_at else "active"
                print(f"{row.id:>4}  {row.scope:<6} {state:<8} {row.created_at:%Y-%m-%d %H:%M:%S}  {row.name}")
        else:
            row = revoke_key(s, args.id)
            if row is None:
                print(f"no API key {args.id}", file=sys.stderr)
                return 1
            print(f"revoked API key {row.id}")
    return 0


def run(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings)
    register_env_key(settings)
    # In the background: it watches heartbeats for a few seconds, and the API need not wait for that.
    threading.Thread(target=requeue_orphans, args=(settings,), name="requeue-orphans", daemon=True).start()
    worker = WorkerProcess(settings)
    worker.start()
    # uvicorn re-raises the signal that stopped it once it is done; as an exception (not the default
    # action, which ends the process on the spot) it lets the `finally` below stop the worker.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        serve(settings, f"Learngene service: {settings.url}  (API docs {settings.url}/docs, "
                        f"data in {settings.data_dir.resolve()})" + auth_note(settings))
    finally:
        worker.stop()


def _exit_on_signal(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="migrations, one worker process, the API (embedded mode)")
    commands.add_parser("api", help="migrations, then the API only")
    commands.add_parser("migrate", help="migrations only")
    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="make a key and print it (once)")
    create.add_argument("--scope", choices=SCOPES, required=True)
    create.add_argument("--name", default="")
    keys.add_parser("list", help="all keys (never the tokens)")
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    if args.command == "keys":
        sys.exit(keys_command(settings, args))
    if args.command == "migrate":
        upgrade(settings)
    elif args.command == "api":
        upgrade(settings)
        register_env_key(settings)
        serve(settings, f"Learngene API: {settings.url}" + auth_note(settings))
    else:
        run(settings)
