"""Liveness and readiness.

    GET /healthz   200 while the process serves requests
    GET /readyz    200 when the database, the broker and at least one worker answer; 503 otherwise
"""
from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, text

from service.db import SessionDep
from service.models import Worker, utcnow
from service.schemas import Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    """200 while the process serves requests; checks nothing else."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}}, summary="Readiness")
def readyz(request: Request, session: SessionDep) -> JSONResponse:
    """200 when the database, the broker and at least one worker answer; 503 with the failing checks named
    otherwise (a load balancer's readiness probe)."""
    settings = request.app.state.settings
    checks: dict[str, str] = {}
    workers = 0
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = "ok"
        # Workers record a heartbeat in the registry; three missed beats and one counts as gone.
        since = utcnow() - timedelta(seconds=3 * settings.worker_heartbeat_s)
        workers = session.scalar(select(func.count()).select_from(Worker).where(Worker.heartbeat_at >= since)) or 0
        checks["workers"] = "ok" if workers else "no worker has reported in the last " \
            f"{3 * settings.worker_heartbeat_s:g} s"
    except Exception as e:  # noqa: BLE001 - any failure means not ready; say which kind
        checks["database"] = f"unavailable: {type(e).__name__}"
        checks["workers"] = "unknown"
    checks["broker"] = _broker_check(request.app.state.celery)
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(status="ready" if ready else "unavailable", checks=checks, workers=workers)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


def _broker_check(celery) -> str:
    try:
        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as e:  # noqa: BLE001
        return f"unavailable: {type(e).__name__}"
