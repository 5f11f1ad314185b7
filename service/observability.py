"""What operators scrape and read: Prometheus metrics at GET /metrics, JSON logs, a request id per request.

    install_observability(app)       # the middleware and /metrics (service/app.py)
    configure_logging()              # every command that runs the service: one JSON object per log line

Each request gets an id (the client's `X-Request-ID` when it sends a sane one, else a new one); it is sent
back in the `X-Request-ID` response header and is in every log line written while the request runs, so a
user's error report and the service's log meet on it.

Metrics (text format 0.0.4): request counts and latency by route template and status, from this process;
jobs by kind and status, queue depth, job durations and model-cache hits/misses, read at scrape time (the
registry is the one source of truth; workers run in other processes).
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from datetime import datetime, timezone

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import func, select

from service.models import Job, JobStatus

REQUEST_ID_HEADER = "X-Request-ID"
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600)
access_log = logging.getLogger("service.access")


# ------------------------------------------------------------------------------------------- logs


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id (when in a request), extras."""

    RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if (rid := getattr(record, "request_id", None) or request_id.get()) is not None:
            entry["request_id"] = rid
        entry.update({k: v for k, v in vars(record).items() if k not in self.RESERVED and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr for the whole process (uvicorn's own access log is replaced by ours)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.access").disabled = True


# ------------------------------------------------------------------------------------------- requests


class RequestContext:
    """ASGI middleware: request id in and out, one access log line, the request metrics.

    Plain ASGI (not BaseHTTPMiddleware) so event streams pass through unbuffered."""

    def __init__(self, app, metrics: HttpMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
        rid = sent if _SANE_ID.match(sent) else uuid.uuid4().hex
        token = request_id.set(rid)
        status, started = 500, time.perf_counter()

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(scope["method"], route, status, elapsed)
            access_log.info("%s %s %s", scope["method"], scope["path"], status, extra={
                "request_id": rid, "method": scope["method"], "path": scope["path"], "route": route, "status": status,
                "duration_ms": round(elapsed * 1000, 2)})
            request_id.reset(token)


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("learngene_http_requests", "HTTP requests by route template and status",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("learngene_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


# ------------------------------------------------------------------------------------------- registry state


class RegistryCollector:
    """Job and model-cache metrics, read when Prometheus scrapes."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self):
        state = self.app.state
        jobs = GaugeMetricFamily("learngene_jobs", "jobs by kind and status", labels=["kind", "status"])
        depth = GaugeMetricFamily("learngene_queue_depth", "jobs waiting for a worker", labels=["kind"])
        durations = HistogramMetricFamily("learngene_job_duration_seconds", "run time of finished jobs",
                                          labels=["kind", "status"])
        with state.sessions() as s:
            counts = s.execute(select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)).all()
            finished = s.execute(select(Job.kind, Job.status, Job.started_at, Job.finished_at).where(
                Job.status.in_([JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled]),
                Job.started_at.is_not(None), Job.finished_at.is_not(None))).all()
        queued = {}
        for kind, status, n in counts:
            jobs.add_metric([kind.value, status.value], n)
            if status == JobStatus.queued:
                queued[kind.value] = n
        for kind in ("task", "individual"):
            depth.add_metric([kind], queued.get(kind, 0))
        by_label: dict[tuple[str, str], list[float]] = {}
        for kind, status, started, ended in finished:
            by_label.setdefault((kind.value, status.value), []).append((ended - started).total_seconds())
        for labels, seconds in by_label.items():
            buckets = [(str(b), sum(1 for x in seconds if x <= b)) for b in JOB_BUCKETS]
            durations.add_metric(list(labels), buckets + [("+Inf", len(seconds))], sum(seconds))
        cache = state.models
        hits = CounterMetricFamily("learngene_model_cache_hits", "predictions served by a loaded model")
        hits.add_metric([], cache.hits)
        misses = CounterMetricFamily("learngene_model_cache_misses", "predictions that loaded their model first")
        misses.add_metric([], cache.misses)
        yield from (jobs, depth, durations, hits, misses)


router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}}, summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    """Prometheus metrics of this API process and of the registry's jobs (no key needed: scrape it)."""
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)


def install_observability(app: FastAPI) -> None:
    registry = CollectorRegistry()
    registry.register(RegistryCollector(app))
    app.state.metrics_registry = registry
    app.add_middleware(RequestContext, metrics=HttpMetrics(registry))
    app.include_router(router)
