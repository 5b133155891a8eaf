"""The alert webhook never follows a redirect: a 3xx is a failed delivery, logged with its target."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web

from agents.builtin.alerting import deliver


async def stub(aiohttp_server: Any) -> tuple[Any, list[str]]:
    """A receiver whose ``/hook`` redirects to ``/elsewhere``; it records every path it is sent."""
    hits: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPTemporaryRedirect("/elsewhere")

    async def elsewhere(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/elsewhere", elsewhere)
    return await aiohttp_server(app), hits


async def test_a_redirect_is_a_failed_delivery(aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    server, hits = await stub(aiohttp_server)
    with caplog.at_level(logging.WARNING, logger="agents.builtin.alerting"):
        delivered = await deliver(str(server.make_url("/hook")), {"n": 1}, what="alert 7", first_delay=0)
    assert delivered is False
    assert hits == ["/hook"]  # not followed, and not retried
    [record] = [r for r in caplog.records if "alert 7" in r.getMessage()]
    message = record.getMessage()
    assert "HTTP 307" in message and "/elsewhere" in message and "not followed" in message


async def test_a_2xx_is_delivered(aiohttp_server: Any) -> None:
    server, hits = await stub(aiohttp_server)
    assert await deliver(str(server.make_url("/elsewhere")), {"n": 1}, first_delay=0) is True
    assert hits == ["/elsewhere"]


async def test_a_5xx_is_retried_then_fails(aiohttp_server: Any) -> None:
    calls: list[int] = []

    async def broken(request: web.Request) -> web.Response:
        calls.append(1)
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/hook", broken)
    server = await aiohttp_server(app)
    assert await deliver(str(server.make_url("/hook")), {}, attempts=3, first_delay=0) is False
    assert len(calls) == 3
