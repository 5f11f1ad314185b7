"""Schemathesis against the service's own OpenAPI schema, on the in-process app and queue of tests/api:
no 5xx, and every response conforms to the schema (status code, content type, body, headers)."""
from __future__ import annotations

from collections import Counter

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.settings import Settings

from .conftest import API_KEY

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
SEEN: Counter[int] = Counter()  # status codes over the whole run, for docs/service.md's table


def _openapi() -> dict:
    """The schema the service serves (same code, a throwaway data folder): cases are generated from it at
    collection time and sent, through schemathesis' ASGI transport, to each test's own app (the `api` fixture's)."""
    with tempfile.TemporaryDirectory() as tmp:
        return create_app(Settings(data_dir=Path(tmp), auth=True)).openapi()


CURRENT: dict = {}


async def current_app(scope, receive, send):
    """The ASGI app schemathesis calls: forwards to the app of the running test."""
    await CURRENT["app"](scope, receive, send)


schema = schemathesis.openapi.from_dict(_openapi())
schema.app = current_app


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_openapi_fuzz(case, api):
    # With the key, so requests reach the handlers (401s are tested in test_auth.py); the queue is the fixture's.
    CURRENT["app"] = api.client.app  # this test's app (its own registry and in-process queue)
    response = case.call(headers={"Authorization": f"Bearer {API_KEY}"})
    # GET /readyz answers 503 by design here (no worker process beats in these tests); its body is checked.
    checks = CHECKS[1:] if case.path == "/readyz" else CHECKS
    if case.path != "/readyz":
        SEEN[response.status_code] += 1
    case.validate_response(response, checks=checks)
    api.run_jobs()  # whatever was queued runs, so later GETs see final jobs as well


def test_fuzz_summary():
    """Runs after the fuzz cases in this module: they sent requests and none was a 5xx."""
    total = sum(SEEN.values())
    print(f"\nRELIABILITY fuzz: {total} requests, statuses {dict(sorted(SEEN.items()))}")
    assert total > 50 and not [s for s in SEEN if s >= 500]
