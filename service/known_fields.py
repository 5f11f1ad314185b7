"""Requests as the OpenAPI document describes them: what an operation does not take is refused, not ignored.

    app.include_router(router, dependencies=[KnownFieldsOnly])

`?colective=x`, `-F learngene=99` or `{"presets": ...}` answer 422 `unknown-field` naming the closest field the
operation takes; a single-valued query parameter sent twice, or an integer not written in digits, a 422 too.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from fastapi import Depends, Request

from service.problems import Problem

_INTEGER = re.compile(r"-?[0-9]+")


def _property_names(schema: dict, components: dict) -> set[str]:
    """The property names of a request-body schema, through `$ref` and `allOf`."""
    if "$ref" in schema:
        schema = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
    names = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        names |= _property_names(part, components)
    return names


def _refuse_unknown(where: str, sent: Iterable[str], known: set[str]) -> None:
    unknown = [name for name in dict.fromkeys(sent) if name not in known]
    if not unknown:
        return
    errors = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.5)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        takes = ", ".join(f"`{k}`" for k in sorted(known)) or "none"
        errors.append({"loc": [where, name], "type": "unknown_field",
                       "msg": f"unknown {where} field `{name}`{hint} (this operation takes: {takes})"})
    raise Problem(422, "Unknown field", "; ".join(e["msg"] for e in errors), type="unknown-field", errors=errors)


def _refuse_loose_values(request: Request, query: dict[str, dict]) -> None:
    """A parameter the document gives one value must come once (`?method=a&method=b` is not one method), and an
    integer must be written as one (pydantic would also read `5.0`, `+5` or `5_000`)."""
    for name, schema in query.items():
        values = request.query_params.getlist(name)
        types = {schema.get("type"), *(branch.get("type") for branch in schema.get("anyOf", []))}
        problem = None
        if len(values) > 1 and "array" not in types:
            problem = f"`{name}` is given {len(values)} times; it takes one value"
        elif values and "integer" in types and not _INTEGER.fullmatch(values[0]):
            problem = f"`{name}` must be an integer written in digits, not {values[0][:40]!r}"
        if problem:
            raise Problem(422, "Invalid request", problem, type="invalid-request",
                          errors=[{"loc": ["query", name], "msg": problem, "type": "invalid_query_value"}])


async def known_fields_only(request: Request) -> None:
    """422 for a query parameter, form field or JSON member that the operation does not take (a misspelt
    `learngene=` must not silently fall back to a default). What an operation takes is what the OpenAPI
    document says it takes."""
    document = request.app.openapi()
    route = request.scope.get("route")
    operation = document.get("paths", {}).get(getattr(route, "path", ""), {}).get(request.method.lower())
    if operation is None:
        return
    query = {p["name"]: p.get("schema", {}) for p in operation.get("parameters", []) if p.get("in") == "query"}
    _refuse_unknown("query", request.query_params.keys(), set(query))
    _refuse_loose_values(request, query)
    content_type = request.headers.get("content-type", "")
    components = document.get("components", {}).get("schemas", {})
    if content_type.startswith("application/json") and "requestBody" in operation:
        try:
            body = await request.json()  # the bytes FastAPI already read; malformed JSON is its 422
        except ValueError:
            return
        schema = operation["requestBody"].get("content", {}).get("application/json", {}).get("schema", {})
        if isinstance(body, dict):
            _refuse_unknown("body", body.keys(), _property_names(schema, components))
    elif content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        schema = operation.get("requestBody", {}).get("content", {}).get(content_type.split(";")[0].strip())
        if schema is None:  # the other form encoding: the document names one
            schema = next(iter(operation.get("requestBody", {}).get("content", {}).values()), {})
        form = await request.form()  # already parsed (and cached) by FastAPI before dependencies run
        _refuse_unknown("form", form.keys(), _property_names(schema.get("schema", {}), components))


KnownFieldsOnly = Depends(known_fields_only)
