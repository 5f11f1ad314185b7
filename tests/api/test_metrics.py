"""GET /metrics in the Prometheus text format (parsed by prometheus_client's parser), and request ids in the
response header and the JSON log line of the same request."""
from __future__ import annotations

import json
import logging

from prometheus_client.parser import text_string_to_metric_families

from service.observability import JsonFormatter


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_requests_jobs_and_model_cache(api, make_task):
    api.post_task(make_task(["a", "b", "c"], 6, seed=0))
    queued = _samples(api.client.get("/metrics").text)
    assert queued[("learngene_queue_depth", (("kind", "task"),))] == 1
    assert queued[("learngene_jobs", (("kind", "task"), ("status", "queued")))] == 1
    api.run_jobs()
    api.client.post("/individuals", files={"file": ("s.npz", make_task(["p", "q"], 4, seed=1))}, data={"epochs": "1"})
    api.run_jobs()
    buf = make_task(["p", "q"], 2, seed=2)
    for _ in range(3):
        assert api.client.post("/individuals/1/predictions", files={"file": ("x.npz", buf)}).status_code == 200
    api.client.get("/jobs/999")  # a 404

    r = api.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=")
    s = _samples(r.text)
    route = ("method", "POST"), ("route", "/individuals/{individual_id}/predictions"), ("status", "200")
    assert s[("learngene_http_requests_total", route)] == 3
    not_found = ("method", "GET"), ("route", "/jobs/{job_id}"), ("status", "404")
    assert s[("learngene_http_requests_total", not_found)] == 1
    count = ("learngene_http_request_duration_seconds_count",
             (("method", "POST"), ("route", "/individuals/{individual_id}/predictions")))
    assert s[count] == 3
    assert s[("learngene_jobs", (("kind", "task"), ("status", "succeeded")))] == 1
    assert s[("learngene_queue_depth", (("kind", "task"),))] == 0
    assert s[("learngene_job_duration_seconds_count", (("kind", "individual"), ("status", "succeeded")))] == 1
    assert s[("learngene_model_cache_misses_total", ())] == 1 and s[("learngene_model_cache_hits_total", ())] == 2


def test_request_id_in_the_header_and_the_log(api, caplog):
    caplog.set_level(logging.INFO, logger="service.access")
    r = api.client.get("/jobs/12345")
    rid = r.headers["x-request-id"]
    assert r.status_code == 404 and len(rid) == 32
    mine = api.client.get("/healthz", headers={"X-Request-ID": "trace-abc.1"})
    assert mine.headers["x-request-id"] == "trace-abc.1"  # a sane id from the client is kept
    odd = api.client.get("/healthz", headers={"X-Request-ID": "no spaces <script>"})
    assert odd.headers["x-request-id"] != "no spaces <script>"
    lines = [json.loads(JsonFormatter().format(rec)) for rec in caplog.records if rec.name == "service.access"]
    (line,) = [entry for entry in lines if entry.get("path") == "/jobs/12345"]
    assert line["request_id"] == rid and line["status"] == 404 and line["route"] == "/jobs/{job_id}"
    assert line["level"] == "info" and "duration_ms" in line
