"""The OpenAPI description: served at /api/openapi.json, valid, and in step with the app's routes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import schemathesis
from aiohttp.test_utils import TestClient

from bus.config import Settings
from web.api.openapi import document
from web.app import create_app
from web.security import COOKIE

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
DOCUMENTED_ELSEWHERE = {("/metrics", "GET")}
"""Documented routes that are neither under /api/ nor /healthz (so not in the route walk)."""

ERROR_STATUSES = {"400", "401", "403", "404", "405", "409", "413", "421", "429", "503"}


def _operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method.upper()) for path, item in doc["paths"].items() for method in item if method in METHODS
    }


def _routes(settings: Settings) -> set[tuple[str, str]]:
    """(path, method) of every route the app registers under /api/ or at /healthz, HEAD aside."""
    app = create_app(settings)
    found = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method != "HEAD" and (path.startswith("/api/") or path == "/healthz"):
            found.add((path, route.method))
    return found


def _deref(doc: dict[str, Any], node: Any) -> Any:
    """``node`` with a top-level ``$ref`` followed (local references only)."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


async def test_the_document_is_served_as_json(client: TestClient) -> None:
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    served = await resp.json()
    assert served == document()
    assert served["openapi"].startswith("3.1.")


def test_every_route_is_documented_and_every_documented_path_is_a_route(
    db_url: str, settings_for: Callable[..., Settings]
) -> None:
    routes = _routes(settings_for(db_url))
    documented = _operations(document())
    assert routes - documented == set(), "routes missing from web/openapi.yaml"
    assert documented - DOCUMENTED_ELSEWHERE - routes == set(), "documented but not routed"
    all_routes = {
        (r.resource.canonical, r.method)
        for r in create_app(settings_for(db_url)).router.routes()
        if r.resource is not None
    }
    assert all_routes >= DOCUMENTED_ELSEWHERE


def test_path_parameters_are_declared() -> None:
    doc = document()
    for path, item in doc["paths"].items():
        in_path = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            if method not in METHODS:
                continue
            params = [_deref(doc, p) for p in operation.get("parameters", [])]
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == in_path, f"{method.upper()} {path}"


def test_every_operation_has_an_id_a_success_and_json_errors() -> None:
    doc = document()
    ids = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            ids.append(operation["operationId"])
            statuses = set(operation["responses"])
            assert any(s.startswith("2") for s in statuses), f"{method.upper()} {path}"
            for status in statuses & ERROR_STATUSES:
                response = _deref(doc, operation["responses"][status])
                schema = response["content"]["application/json"]["schema"]
                refs = [schema, *schema.get("oneOf", [])]
                assert any(r.get("$ref") == "#/components/schemas/Error" for r in refs), (
                    f"{method.upper()} {path} {status}"
                )
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"] == {"error": {"type": "string"}, "hint": {"type": "string"}}


def test_schemathesis_loads_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(document())
    loaded = {(result.ok().path, result.ok().method.upper()) for result in schema.get_all_operations()}
    assert loaded == _operations(document())


def test_security_schemes_are_bearer_and_the_session_cookie() -> None:
    doc = document()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerToken"]["description"],
    }
    assert (schemes["sessionCookie"]["in"], schemes["sessionCookie"]["name"]) == ("cookie", COOKIE)
    assert doc["paths"]["/healthz"]["get"]["security"] == []
