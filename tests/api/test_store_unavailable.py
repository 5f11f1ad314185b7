"""An S3 artifact store that cannot be reached: the API answers 503 problem+json with Retry-After and changes
nothing; once the store is back the same request succeeds. Both registries (SQLite, PostgreSQL)."""
from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.app import create_app
from service.migrate import upgrade
from service.models import Job, Task


def test_upload_while_the_store_is_down_is_a_503_and_changes_nothing(tmp_path, settings_for, database, s3_private,
                                                                     make_task, monkeypatch):
    for k, v in s3_private.env().items():
        monkeypatch.setenv(k, v)
    bucket = s3_private.bucket()
    settings = settings_for(tmp_path, database_url=database, artifact_url=f"s3://{bucket}/a", artifact_timeout_s=1)
    upgrade(settings)
    sent: list[int] = []
    with TestClient(create_app(settings, enqueue=lambda job: sent.append(job.id)),
                    raise_server_exceptions=False) as client:
        s3_private.pause()
        try:
            r = client.post("/tasks", files={"file": ("t.npz", make_task(["a", "b"], 4))})
        finally:
            s3_private.resume()
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/problem+json" and int(r.headers["retry-after"]) > 0
        assert r.json()["type"] == "/problems/store-unavailable"
        with client.app.state.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Task)) == 0
            assert s.scalar(select(func.count()).select_from(Job)) == 0
        assert sent == [] and not any(settings.artifact_cache.rglob("upload-*"))  # the staged upload is gone too
        assert s3_private.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
        again = client.post("/tasks", files={"file": ("t.npz", make_task(["a", "b"], 4))})
        assert again.status_code == 202, again.text
        assert len(sent) == 1
