"""The OpenAPI document as the service's contract, and the pages that show it (offline: no CDN).

    contract_in_openapi(app)    # links between operations, closed multipart forms, non-empty files, version
    install_docs(app)           # /docs (Swagger UI) and /redoc from fastapi-offline's files, served here
    python -m service.openapi docs/openapi.json     # write the committed copy (tests/api/test_openapi.py
                                                    # fails while it differs from what the code serves)
"""
from __future__ import annotations

import json
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_STATIC = "/docs-static"
JOB_ID = {"job_id": "$response.body#/id"}
INDIVIDUAL_ID = {"individual_id": "$response.body#/result/individual_id"}
# Operations that create (or reveal) a resource → the operations that take its id: what generated clients and
# stateful testing follow. (method, path, status): {link name: (method, path, parameters)}.
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("post", "/tasks", "202"): {
        "GetJob": ("get", "/jobs/{job_id}", JOB_ID),
        "CancelJob": ("post", "/jobs/{job_id}/cancel", JOB_ID),
        "FollowJob": ("get", "/jobs/{job_id}/events", JOB_ID),
        "GetTask": ("get", "/tasks/{task_id}", {"task_id": "$response.body#/task_id"}),
    },
    ("post", "/individuals", "202"): {
        "GetJob": ("get", "/jobs/{job_id}", JOB_ID),
        "CancelJob": ("post", "/jobs/{job_id}/cancel", JOB_ID),
        "FollowJob": ("get", "/jobs/{job_id}/events", JOB_ID),
    },
    ("post", "/collectives", "201"): {
        "GetCollective": ("get", "/collectives/{name}", {"name": "$response.body#/name"}),
        "ParametersPlot": ("get", "/collectives/{name}/parameters.png", {"name": "$response.body#/name"}),
    },
    # An individual job's result names the individual it made.
    ("get", "/jobs/{job_id}", "200"): {
        "GetIndividual": ("get", "/individuals/{individual_id}", INDIVIDUAL_ID),
        "Predict": ("post", "/individuals/{individual_id}/predictions", INDIVIDUAL_ID),
        "IndividualWeights": ("get", "/individuals/{individual_id}/weights", INDIVIDUAL_ID),
        "IndividualCurve": ("get", "/individuals/{individual_id}/curve.png", INDIVIDUAL_ID),
        "DeleteIndividual": ("delete", "/individuals/{individual_id}", INDIVIDUAL_ID),
    },
}


def package_version() -> str:
    try:
        return version("learngene-service")
    except PackageNotFoundError:  # run from a tree that was never installed
        return "0.0.0"


def _component(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    return components[schema["$ref"].rsplit("/", 1)[-1]] if "$ref" in schema else schema


def _close_form(schema: dict[str, Any], components: dict[str, Any]) -> None:
    """A multipart body in one flat object (its form model's fields merged in) that takes no other field, with
    files that may not be empty: exactly what the service accepts (unknown fields answer 422)."""
    for part in schema.pop("allOf", []):
        merged = _component(part, components)
        schema.setdefault("properties", {}).update(merged.get("properties", {}))
        schema["required"] = sorted({*schema.get("required", []), *merged.get("required", [])})
    schema["additionalProperties"] = False
    for prop in schema.get("properties", {}).values():
        # A form field is sent or left out: it cannot be JSON null (an optional field's `null` branch goes).
        branches = [b for b in prop.pop("anyOf", []) if b.get("type") != "null"]
        if branches:
            prop.update(branches[0] if len(branches) == 1 else {"anyOf": branches})
        if prop.get("default", 0) is None:
            del prop["default"]
        if prop.get("contentMediaType") == "application/octet-stream":
            prop["minLength"] = 1


def contract_in_openapi(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.get("components", {}).get("schemas", {})
        paths = schema["paths"]
        for operations in paths.values():
            for operation in operations.values():
                form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
                if form is not None:
                    _close_form(_component(form["schema"], components), components)
        for (method, path, status), links in LINKS.items():
            response = paths[path][method]["responses"][status]
            response["links"] = {
                name: {"operationId": paths[target][target_method]["operationId"], "parameters": params}
                for name, (target_method, target, params) in links.items()
            }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc, their scripts and styles served by this app (no CDN, no fonts)."""
    import fastapi_offline

    static = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_STATIC, StaticFiles(directory=static), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_STATIC}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_STATIC}/favicon.png", with_google_fonts=False)


def document_text() -> str:
    """The OpenAPI document the service serves, as committed in docs/openapi.json."""
    import tempfile

    from service.app import create_app
    from service.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        schema = create_app(Settings(data_dir=Path(tmp), auth=True)).openapi()
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    text = document_text()
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
