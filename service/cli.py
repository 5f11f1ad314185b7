"""What `learngene serve | api | worker | migrate | keys` do (the command line itself is learngene_client/cli.py).

    learngene serve        # migrations, one worker process, the API; prints the URL (make run)
    learngene api          # migrations, then the API only (docker compose's api service)
    learngene worker       # a Celery worker with the service settings (docker compose's workers)
    learngene migrate      # migrations only
    learngene keys create --scope write [--name ci]   # prints a new API key once

`python -m service run|api|migrate|keys ...` is an alias of these commands (`run` is `serve`).
Settings come from LEARNGENE_* variables; every command finds the data folder the same way
(service/settings.py: LEARNGENE_DATA_DIR, else the nearest ./var holding a registry, else ./var) and says
which registry it uses.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import uvicorn
from sqlalchemy import make_url, select
from sqlalchemy.orm import Session

from service import jobstate
from service.auth import ensure_key
from service.db import make_engine, make_sessionmaker
from service.migrate import upgrade
from service.models import ApiKey, Job, JobStatus, utcnow
from service.observability import configure_logging
from service.settings import Settings

log = logging.getLogger("service")


class Stopped(Exception):
    """SIGINT or SIGTERM arrived: stop the service cleanly (exit status 0)."""


def registry_line(settings: Settings) -> str:
    """Which registry a command uses and why: printed by every command that touches it."""
    if settings.database_url:
        shown = make_url(settings.database_url).render_as_string(hide_password=True)
        return f"registry: {shown} (LEARNGENE_DATABASE_URL)"
    return f"registry: {settings.data_dir.resolve() / 'registry.sqlite3'} (data folder {settings.data_dir_origin})"


def say_registry(settings: Settings) -> None:
    print(registry_line(settings), file=sys.stderr, flush=True)


class Server(uvicorn.Server):
    """uvicorn, announcing the URL once it really accepts connections."""

    def __init__(self, config: uvicorn.Config, banner: str) -> None:
        super().__init__(config)
        self.banner = banner

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            print(self.banner, flush=True)


def _serve_http(settings: Settings, banner: str) -> None:
    from service.app import create_app  # here, not at the top: `learngene keys` needs no app (nor torch)

    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                            timeout_graceful_shutdown=10, log_config=None)
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
        from service.queue import make_celery, send_job

        celery = make_celery(settings)
        for job in requeued:
            send_job(celery, job)
        log.warning("requeued %d job(s) interrupted by the last shutdown", len(requeued))
    engine.dispose()
    return len(requeued)


class WorkerProcess:
    """The embedded worker: a `python -m workers` child, restarted if it dies, stopped with us.

    Its output goes to a log file in the data folder: Celery's banner would otherwise bury the service's."""

    def __init__(self, settings: Settings) -> None:
        self.env = {**os.environ, "LEARNGENE_DATA_DIR": str(settings.data_dir.resolve())}
        self.log_path = settings.data_dir.resolve() / "worker.log"
        self.proc: subprocess.Popen | None = None
        self.stopping = threading.Event()

    def start(self) -> None:
        self.proc = self._spawn()
        threading.Thread(target=self._watch, daemon=True).start()

    def _spawn(self) -> subprocess.Popen:
        # Its own session: Ctrl+C reaches only us, and we stop the worker with one SIGTERM (warm shutdown).
        with open(self.log_path, "ab") as out:
            return subprocess.Popen([sys.executable, "-m", "workers", "-n", "embedded@%h"], env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def _watch(self) -> None:
        while not self.stopping.is_set():
            code = self.proc.wait()
            if self.stopping.is_set():
                return
            log.error("the worker exited with %s (see %s); starting it again", code, self.log_path)
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


def key_command(settings: Settings) -> str:
    """The one command that makes a write key for this service, with the real paths: ready to paste."""
    exe = Path(sys.executable).parent / "learngene"
    program = str(exe) if exe.exists() else (shutil.which("learngene") or "learngene")
    if settings.database_url:
        return f"{program} keys create --scope write   (with this service's LEARNGENE_DATABASE_URL)"
    return f"LEARNGENE_DATA_DIR={settings.data_dir.resolve()} {program} keys create --scope write"


def auth_note(settings: Settings) -> str:
    if not settings.auth:
        return ("\n  WARNING: LEARNGENE_AUTH=off - anyone who can reach this port may upload, train and cancel. "
                "Local use only.")
    return ("\n  Uploads and training need a write key (Authorization: Bearer <key>). Make one with:"
            f"\n      {key_command(settings)}"
            "\n  then give it to the CLI as LEARNGENE_API_KEY=<key> or --key <key>.")


def banner(settings: Settings, title: str) -> str:
    return (f"{title}: {settings.url}  (API docs {settings.url}/docs, metrics {settings.url}/metrics)\n"
            f"  {registry_line(settings)}" + auth_note(settings))


@contextmanager
def registry_session(settings: Settings, *, create: bool = False) -> Iterator[Session]:
    """A session on the configured registry, migrated first: for local admin commands (API keys).

    Unless `create`, a SQLite registry must exist already: a key made in a registry no service reads is
    a key that answers 401, so a wrong folder is an error that names the folder, not a new registry."""
    say_registry(settings)
    if not create and not settings.database_url and not (settings.data_dir / "registry.sqlite3").exists():
        raise LookupError(f"no registry in {settings.data_dir.resolve()}: start the service first (learngene "
                          "serve), or name its data folder with --data-dir or LEARNGENE_DATA_DIR")
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


def migrate(settings: Settings) -> None:
    configure_logging()
    say_registry(settings)
    upgrade(settings)


def api(settings: Settings) -> None:
    """Migrations, then the API only (production: workers run on their own)."""
    configure_logging()
    say_registry(settings)
    upgrade(settings)
    register_env_key(settings)
    with _stop_on_signals():
        _serve_http(settings, banner(settings, "Learngene API"))


def serve(settings: Settings) -> None:
    """The embedded service: migrations, one worker process and the API. Ctrl+C or SIGTERM stop both (status 0)."""
    configure_logging()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    say_registry(settings)
    upgrade(settings)
    register_env_key(settings)
    # In the background: it watches heartbeats for a few seconds, and the API need not wait for that.
    threading.Thread(target=requeue_orphans, args=(settings,), name="requeue-orphans", daemon=True).start()
    worker = WorkerProcess(settings)
    worker.start()
    try:
        with _own_terminal(), _stop_on_signals():
            _serve_http(settings, banner(settings, "Learngene service") +
                        f"\n  worker log: {worker.log_path}")
    finally:
        worker.stop()


def worker(settings: Settings, extra: list[str]) -> None:
    say_registry(settings)
    from workers.__main__ import main as worker_main

    worker_main(extra)


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """uvicorn stops on SIGINT/SIGTERM and then re-raises the signal; ours turns it into a clean return.

    (The default actions would end the process on the spot, with status 130 or 143.)"""
    def stop(_signum, _frame) -> None:
        raise Stopped

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except Stopped:
        print("stopped", file=sys.stderr, flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _own_terminal() -> Iterator[None]:
    """Become the terminal's foreground process group while we run, so Ctrl+C reaches only us.

    Under `make run`, make shares our group and would die of the SIGINT itself (status 130, `*** Interrupt`)
    whatever we return; in our own group it just waits for our status (0)."""
    try:
        fd = sys.stdin.fileno()
        if not os.isatty(fd) or os.tcgetpgrp(fd) != os.getpgrp() or os.getpid() == os.getpgrp():
            yield
            return
    except (OSError, ValueError):
        yield
        return
    before = os.getpgrp()
    hold = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # a background group may not set the terminal
    try:
        os.setpgid(0, 0)
        os.tcsetpgrp(fd, os.getpgrp())
    except OSError:
        signal.signal(signal.SIGTTOU, hold)
        yield
        return
    try:
        yield
    finally:
        try:
            os.tcsetpgrp(fd, before)
        except OSError:
            pass
        signal.signal(signal.SIGTTOU, hold)


def main(argv: list[str] | None = None) -> None:
    """`python -m service ...`: an alias of the `learngene` command line (`run` is `learngene serve`)."""
    from learngene_client.cli import app

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["run"]:
        args[0] = "serve"
    app(args=args, prog_name="python -m service")
