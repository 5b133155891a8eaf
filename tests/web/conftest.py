"""Web fixtures: the real app on a real database, through pytest-aiohttp's test client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from web.app import create_app


@pytest.fixture
async def client(
    db_url: str, settings_for: Callable[..., Any], aiohttp_client: Any
) -> AsyncIterator[TestClient]:
    yield await aiohttp_client(create_app(settings_for(db_url)))


@pytest.fixture
def make_client(db_url: str, settings_for: Callable[..., Any], aiohttp_client: Any) -> Callable[..., Any]:
    async def build(**env: str) -> TestClient:
        return await aiohttp_client(create_app(settings_for(db_url, **env)))

    return build


async def read_events(
    resp: ClientResponse, n: int, timeout: float = 10, skip: tuple[str, ...] = ("hello",)
) -> list[dict[str, Any]]:
    """The next ``n`` SSE messages (id, event, data), skipping comments and ``skip`` events."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] = {}

    async def read() -> None:
        while len(found) < n:
            line = (await resp.content.readline()).decode().rstrip("\r\n")
            if line.startswith(":"):
                continue
            if line == "":
                if current and current.get("event") not in skip:
                    if "data" in current:
                        current["data"] = json.loads(current["data"])
                    found.append(dict(current))
                current.clear()
                continue
            key, _, value = line.partition(": ")
            current[key] = value

    await asyncio.wait_for(read(), timeout)
    return found
