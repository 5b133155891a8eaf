"""``GET /api/openapi.json``: the OpenAPI 3.1 description of the API, kept as data in web/openapi.yaml."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import yaml
from aiohttp import web


@cache
def document() -> dict[str, Any]:
    """The OpenAPI document, read once from the package data."""
    text = resources.files("web").joinpath("openapi.yaml").read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


@cache
def _body() -> str:
    return json.dumps(document(), indent=1)


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI description as JSON."""
    return web.Response(text=_body(), content_type="application/json")
