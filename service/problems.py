"""RFC 9457 problem details: every error the API returns, and nothing else (no stack traces).

    raise Problem(404, "Not Found", "learngene 7 does not exist")
    raise Problem(422, "Invalid dataset", str(err), type="invalid-dataset")
    install_problem_handlers(app)

`type` is a relative URI `/problems/<slug>` for errors of this service, `about:blank` for plain HTTP ones.
"""
from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from learngene.data import DatasetError
from service.artifacts import ArtifactCorrupt, ArtifactMissing, ArtifactUnavailable

log = logging.getLogger("service")
PROBLEM_JSON = "application/problem+json"
STORE_RETRY_AFTER_S = 5  # Retry-After of a 503 while the artifact store is unreachable


class ProblemDetail(BaseModel):
    """The body of every error response (documented in the OpenAPI schema)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = Field(None, description="for 422 on request fields: which, and why")


class Problem(HTTPException):
    """An error for the client. An HTTPException, so FastAPI lets it through body parsing untouched."""

    def __init__(self, status: int, title: str | None = None, detail: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(status, detail or title, headers)
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.type = f"/problems/{type}" if type else "about:blank"
        self.headers = headers
        self.extra = extra


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body = {"type": problem.type, "title": problem.title, "status": problem.status}
    if problem.detail:
        body["detail"] = problem.detail
    body["instance"] = request.url.path
    body.update(jsonable_encoder(problem.extra))
    return JSONResponse(body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON)


def not_found(what: str, ident: object) -> Problem:
    return Problem(404, detail=f"{what} {ident} does not exist", type="not-found")


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(DatasetError)
    async def _dataset(request: Request, exc: DatasetError) -> JSONResponse:
        return problem_response(request, Problem(422, "Invalid dataset", str(exc), type="invalid-dataset"))

    @app.exception_handler(ArtifactMissing)
    @app.exception_handler(ArtifactCorrupt)
    async def _artifact(request: Request, exc: Exception) -> JSONResponse:
        log.error("artifact problem on %s: %s", request.url.path, exc)
        return problem_response(request, Problem(
            500, "Artifact unavailable", "stored weights or data are missing or failed their integrity check",
            type="artifact-unavailable"))

    @app.exception_handler(ArtifactUnavailable)
    async def _store_down(request: Request, exc: ArtifactUnavailable) -> JSONResponse:
        log.warning("artifact store unreachable on %s: %s", request.url.path, exc)
        return problem_response(request, Problem(
            503, "Artifact store unavailable", "the artifact store cannot be reached just now; nothing was changed: "
            "retry shortly", type="store-unavailable", headers={"Retry-After": str(STORE_RETRY_AFTER_S)}))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        plain = isinstance(exc.detail, str) and exc.detail != HTTPStatus(exc.status_code).phrase
        detail = exc.detail if plain else None
        headers = getattr(exc, "headers", None)
        allowed = allowed_methods(request) if exc.status_code == 405 else None
        if allowed:  # Starlette names the methods of the first route on the path only
            headers = {**(headers or {}), "Allow": allowed}
            detail = f"{request.method} is not allowed on {request.url.path}; it takes {allowed}"
        return problem_response(request, Problem(exc.status_code, detail=detail, headers=headers))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": _message(e), "type": e.get("type", "")} for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(map(str, e['loc'][1:] or e['loc']))}: {e['msg']}" for e in errors)
        return problem_response(
            request, Problem(422, "Invalid request", detail, type="invalid-request", errors=errors)
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Log the trace for operators; the client learns only that it was our fault.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(request, Problem(500, detail="an unexpected error occurred; it has been logged"))


def _message(error: dict[str, Any]) -> str:
    """A validation error's message, rewritten where pydantic's would puzzle a user."""
    loc, msg = error.get("loc", ()), error.get("msg", "")
    if len(loc) == 2 and loc[0] == "body" and "UploadFile" in msg and isinstance(error.get("input"), str):
        # `curl -F file=task1.npz` sends the text "task1.npz", not the file.
        return (f"field `{loc[1]}` must be a file upload, not the text {error['input'][:60]!r}; with curl use "
                f"-F {loc[1]}=@{error['input'][:60]}")
    return msg


def allowed_methods(request: Request) -> str | None:
    """The methods the OpenAPI document gives this request's path (for the `Allow` of a 405), or None when
    the path is not in the document (the dashboard's pages)."""
    for template, operations in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), request.url.path):
            methods = [m.upper() for m in operations]
            return ", ".join(sorted({*methods, *(["HEAD"] if "GET" in methods else [])}))
    return None


def problems_in_openapi(app: FastAPI) -> None:
    """Document every 4xx/5xx response as application/problem+json with the ProblemDetail schema,
    including FastAPI's own 422, so the schema says what the service really sends."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["ProblemDetail"] = ProblemDetail.model_json_schema(ref_template="#/components/schemas/{model}")
        ref = {"$ref": "#/components/schemas/ProblemDetail"}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if "requestBody" in operation:  # any body may be malformed (400) or too large (413)
                    for code, phrase in (("400", "Bad Request"), ("413", "Content Too Large")):
                        operation["responses"].setdefault(code, {"description": phrase})
                for code, response in operation.get("responses", {}).items():
                    # A route's own JSON body for an error status (GET /readyz's 503 Readiness) stays as it is.
                    own = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
                    if own and not own.endswith(("/ProblemDetail", "/HTTPValidationError")):
                        continue
                    if code[0] in "45":
                        response["content"] = {PROBLEM_JSON: {"schema": ref}}
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
