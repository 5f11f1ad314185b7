"""API tests: the real app, a migrated registry (each test twice: SQLite, and PostgreSQL from the `pg_url`
fixture, so length, lock and transaction differences show) and artifact store in tmp_path, and an in-process
queue: jobs are recorded when the API sends them and run here, by the same functions the Celery tasks
call, when a test says `api.run_jobs()`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.app import create_app
from service.auth import ensure_key
from service.migrate import upgrade
from service.models import Job, JobKind
from service.settings import Settings
from workers.context import WorkerContext
from workers.grow import run_task_job
from workers.individuals import run_individual_job


@dataclass
class Api:
    client: TestClient
    settings: Settings
    ctx: WorkerContext
    sent: list[int] = field(default_factory=list)  # job ids, in the order the API sent them
    committed_when_sent: list[bool] = field(default_factory=list)

    def run_jobs(self) -> None:
        """Run every sent job, oldest first, as a worker would."""
        while self.sent:
            job_id = self.sent.pop(0)
            with self.ctx.sessions() as s:
                kind = s.scalar(select(Job.kind).where(Job.id == job_id))
            (run_task_job if kind == JobKind.task else run_individual_job)(self.ctx, job_id, worker="test@api")

    def registry_env(self, monkeypatch) -> None:
        """Point CLI commands run in this process at the registry the app uses (SQLite file or PostgreSQL)."""
        monkeypatch.setenv("LEARNGENE_DATA_DIR", str(self.settings.data_dir))
        if self.settings.database_url:
            monkeypatch.setenv("LEARNGENE_DATABASE_URL", self.settings.database_url)

    def post_task(self, data: bytes, **form) -> dict:
        r = self.client.post("/tasks", files={"file": ("task.npz", data)}, data={"epochs": "1", **form})
        assert r.status_code == 202, r.text
        return r.json()


API_KEY = "lgk_test-write-key"  # the `api` fixture's client sends it; tests/api/test_auth.py checks the rest


def make_settings(tmp_path, **overrides) -> Settings:
    # "gradient" extraction: the validated one trains pseudo tasks, too slow for 2 cores and many tests.
    # Apps built by tests themselves run with auth off (they test other things); the `api` fixture's is on.
    overrides.setdefault("auth", False)
    # A short events poll: SSE streams (GET /jobs/{id}/events) see each progress write and end soon after the job.
    overrides.setdefault("events_poll_s", 0.02)
    return Settings(data_dir=tmp_path / "var", extract_method="gradient", progress_interval_s=0.0, **overrides)


@pytest.fixture
def settings_for():
    """make_settings, for tests that build their own app."""
    return make_settings


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request) -> str | None:
    """The registry URL the `api` fixture uses: None for the SQLite default, or a fresh PostgreSQL database."""
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else None


@pytest.fixture
def api(tmp_path, database) -> Api:
    settings = make_settings(tmp_path, auth=True, database_url=database)
    upgrade(settings)
    ctx = WorkerContext.from_settings(settings, name="test@api")
    with ctx.sessions() as s:
        ensure_key(s, API_KEY, "write", name="tests")
        s.commit()
    holder: dict[str, Api] = {}

    def enqueue(job: Job) -> None:
        # Record whether the row is visible to another connection: the job must be committed before it is sent.
        with ctx.sessions() as s:
            holder["api"].committed_when_sent.append(s.get(Job, job.id) is not None)
        holder["api"].sent.append(job.id)

    app = create_app(settings, enqueue=enqueue)
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        holder["api"] = Api(client=client, settings=settings, ctx=ctx)
        yield holder["api"]
