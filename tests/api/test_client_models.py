"""The client's own response models (clients/python/learngene_client/models.py) against the server's OpenAPI
document: every client field exists on the server with a compatible type, every field the server always sends
is in the client model. The client must not import the server."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import learngene_client
from learngene_client import models as client_models
from service.app import create_app

PAIRS = {  # client model -> the server's component schema
    "JobPublic": "JobPublic", "JobProgress": "JobProgress", "CollectivePublic": "CollectivePublic",
    "CollectiveVersionPublic": "CollectiveVersionPublic", "TaskPublic": "TaskPublic",
    "LearngenePublic": "LearngenePublic", "LearngeneDetail": "LearngeneDetail", "Lineage": "Lineage",
    "AliasPublic": "AliasPublic", "IndividualPublic": "IndividualPublic", "Prediction": "Prediction",
    "PredictionsPublic": "PredictionsPublic", "Readiness": "Readiness",
}


def _types(schema: dict) -> set[str]:
    """The JSON types a property schema allows (`$ref` counts as object)."""
    if "$ref" in schema:
        return {"object"}
    if "anyOf" in schema:
        return set().union(*(_types(s) for s in schema["anyOf"]))
    if "enum" in schema or "const" in schema:
        return {schema.get("type", "string")}
    kind = schema.get("type")
    if kind is None:
        return {"any"}
    types = {kind}
    return types | ({"number"} if kind == "integer" else set())


@pytest.fixture(scope="module")
def server_schemas(tmp_path_factory):
    from service.settings import Settings

    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("var")))
    return app.openapi()["components"]["schemas"]


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_client_model_follows_the_server_schema(name, server_schemas):
    server = server_schemas[PAIRS[name]]
    client = getattr(client_models, name).model_json_schema(ref_template="#/{model}")
    for field, prop in client["properties"].items():
        assert field in server["properties"], f"{name}.{field} is not in the server's {PAIRS[name]}"
        theirs, ours = _types(server["properties"][field]), _types(prop)
        assert "any" in ours or "any" in theirs or theirs <= ours | {"null"} and (theirs & ours), \
            f"{name}.{field}: server sends {theirs}, client reads {ours}"
    missing = set(server.get("required", [])) - set(client["properties"])
    assert not missing, f"{name} lacks fields the server always sends: {missing}"


def test_the_client_package_imports_no_server_module():
    root = Path(learngene_client.__file__).parent
    assert root.parent.name == "python" and root.parent.parent.name == "clients"
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in top_level if isinstance(n, ast.ImportFrom) and n.module]
        assert not [m for m in names if m.split(".")[0] in ("service", "workers", "learngene", "torch", "numpy")], path
