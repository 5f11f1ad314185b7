"""Integration stacks: the real app sending real Celery messages to a real broker, a real Celery worker
consuming them (Celery's in-thread test worker), a real database. No fakes anywhere.

    def test_x(stack): stack.client.post("/tasks", ...); stack.wait(job_id)
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from celery.contrib.testing.worker import start_worker
from fastapi.testclient import TestClient

from service.app import create_app
from service.cli import register_env_key
from service.migrate import upgrade
from service.settings import Settings
from workers.heartbeat import Heartbeat
from workers.worker import make_worker_app

pytestmark = pytest.mark.integration
API_KEY = "lgk_integration-write-key"


@dataclass
class Stack:
    client: TestClient
    settings: Settings
    worker_name: str
    kit: type

    def wait(self, job_id: int, timeout: float = 120) -> dict:
        return self.kit.wait_job(self.client, job_id, timeout)


def stack_settings(tmp_path, database: str, broker: str, pg_url: str | None, redis_broker) -> Settings:
    values: dict = {"api_key": API_KEY, "data_dir": tmp_path / "var", "extract_method": "gradient", "progress_interval_s": 0.2,
                    "worker_heartbeat_s": 1.0}
    if database == "postgresql":
        values["database_url"] = pg_url
    if broker == "redis":
        values["broker_url"] = redis_broker.url
        values["redis_key_prefix"] = redis_broker.prefix + tmp_path.name + ":"
    return Settings(**values)


@pytest.fixture(params=[("sqlite", "filesystem"), ("postgresql", "redis")], ids=lambda p: f"{p[0]}+{p[1]}")
def stack(request, tmp_path, kit, redis_broker):
    database, broker = request.param
    pg_url = request.getfixturevalue("pg_url") if database == "postgresql" else None
    settings = stack_settings(tmp_path, database, broker, pg_url, redis_broker)
    upgrade(settings)
    register_env_key(settings)
    worker_app = make_worker_app(settings)
    name = f"it-{database}-{broker}@test"
    # Celery's test worker does not send worker_ready, which starts the heartbeat of a real worker.
    beat = Heartbeat(settings, name, ["grow", "individuals"])
    with start_worker(worker_app, pool="solo", concurrency=1, perform_ping_check=False, shutdown_timeout=60,
                      hostname=name, loglevel="WARNING"):
        beat.start()
        try:
            with TestClient(create_app(settings), raise_server_exceptions=False,
                            headers={"Authorization": f"Bearer {API_KEY}"}) as client:
                yield Stack(client=client, settings=settings, worker_name=name, kit=kit)
        finally:
            beat.stop()
