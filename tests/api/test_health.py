"""Liveness, readiness and the OpenAPI document."""
from __future__ import annotations

from datetime import timedelta

from service.models import Worker, utcnow

PATHS = {
    "/tasks", "/tasks/{task_id}", "/learngenes", "/learngenes/{learngene_id}", "/learngenes/{learngene_id}/weights",
    "/individuals", "/individuals/{individual_id}", "/individuals/{individual_id}/predictions",
    "/individuals/{individual_id}/weights", "/jobs/{job_id}", "/jobs/{job_id}/cancel", "/healthz", "/readyz",
}


def test_readiness_needs_a_live_worker(api):
    assert api.client.get("/healthz").json() == {"status": "ok"}
    r = api.client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"] == "ok" and body["workers"] == 0
    with api.ctx.sessions() as s:
        s.add(Worker(name="stale@host", queues=["grow"], pid=1, heartbeat_at=utcnow() - timedelta(minutes=5)))
        s.commit()
    assert api.client.get("/readyz").status_code == 503  # a worker silent for minutes does not count
    with api.ctx.sessions() as s:
        s.add(Worker(name="live@host", queues=["grow", "individuals"], pid=2))
        s.commit()
    r = api.client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready", "checks": {
        "database": "ok", "workers": "ok", "broker": "ok"}, "workers": 1}


def test_openapi_lists_every_endpoint_and_docs_are_served(api):
    schema = api.client.get("/openapi.json").json()
    assert PATHS <= set(schema["paths"])
    post_tasks = schema["paths"]["/tasks"]["post"]
    assert "202" in post_tasks["responses"] and "multipart/form-data" in post_tasks["requestBody"]["content"]
    for code in ("413", "422", "503"):
        assert list(post_tasks["responses"][code]["content"]) == ["application/problem+json"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    docs = api.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
