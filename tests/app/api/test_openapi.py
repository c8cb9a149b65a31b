"""/openapi.json describes every answer: each route's 2xx responses carry a schema that says
what comes back (a model, or a typed body for protobuf, .npy, zip and text), and every route
of the service is in the document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Response
from fastapi.routing import APIRoute, iter_route_contexts

from app.main import create_app
from tests.conftest import LiveService

# Keys of a JSON Schema that say what a value is; a schema of a title alone (FastAPI's for
# a route returning `Any`) or `{}` says nothing.
_DESCRIBING = {"$ref", "type", "anyOf", "oneOf", "allOf", "enum", "const"}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The document does not depend on the database: SQLite only."""
    return f"sqlite:///{tmp_path / 'warden.db'}"


def _says_something(schema: Any, components: dict[str, Any]) -> bool:
    if not isinstance(schema, dict) or not _DESCRIBING & schema.keys():
        return False
    ref = schema.get("$ref")
    if ref is not None:
        target = components.get(ref.removeprefix("#/components/schemas/"))
        return isinstance(target, dict) and bool(_DESCRIBING & target.keys())
    return True


def undescribed(document: dict[str, Any]) -> list[str]:
    """`METHOD path status` of every 2xx answer without a schema that says what it is."""
    components = document.get("components", {}).get("schemas", {})
    missing = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answers = {
                code: answer
                for code, answer in operation["responses"].items()
                if code.startswith("2") or code == "2XX"
            }
            if not answers:
                missing.append(f"{method.upper()} {path} (no 2xx answer)")
            for code, answer in answers.items():
                content = answer.get("content") or {}
                if not content or not all(
                    _says_something(media.get("schema"), components) for media in content.values()
                ):
                    missing.append(f"{method.upper()} {path} {code}")
    return missing


def _api_operations(app: FastAPI) -> set[tuple[str, str]]:
    """(path, method) of every route of app/api/routes/ the app serves, whether or not it
    shows itself in the document (the dashboard's HTML pages are not API routes)."""
    return {
        (route.path, method.lower())
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute)
        and route.endpoint is not None
        and route.endpoint.__module__.startswith("app.api.routes.")
        for method in route.methods or ()
    }


def test_every_route_documents_what_it_answers(live: LiveService) -> None:
    with live.client() as client:
        answer = client.get("/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    assert undescribed(document) == []
    described = {(path, method) for path, ops in document["paths"].items() for method in ops}
    routes = _api_operations(create_app(live.settings))
    assert len(described) == len(routes)
    assert described == routes
    # The JSON routes answer a malformed parameter with 400 and a `detail`, never 422.
    assert not [
        f"{method} {path}"
        for path, ops in document["paths"].items()
        for method, operation in ops.items()
        if "422" in operation["responses"]
    ]


def test_the_walk_finds_a_route_without_a_schema() -> None:
    app = FastAPI()

    @app.get("/untyped")
    def untyped() -> Any:
        return {}

    @app.get("/typed")
    def typed() -> dict[str, int]:
        return {}

    @app.get("/bodiless", response_class=Response, responses={200: {"description": "bytes"}})
    def bodiless() -> Response:
        return Response(b"")

    assert undescribed(app.openapi()) == ["GET /untyped 200", "GET /bodiless 200"]
