"""The aiohttp application factory: typed state, resources from ``cleanup_ctx``.

``create_app(settings)`` builds the app; :func:`run` serves it, with the
server options of :func:`server_options`. State lives in typed ``AppKey``s
(aiohttp's "no singletons"): the :class:`Bus` and the SSE broadcaster. On
shutdown every SSE stream is stopped first, so clients reconnect and resume
from their cursor, and handlers still running after :data:`SHUTDOWN_TIMEOUT`
are cancelled: stopping never waits on a client.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from bus.client import Bus
from bus.config import Settings
from bus.errors import ConfigError
from web import api, pages, prom, security, sse
from web.broadcaster import Broadcaster
from web.keys import BROADCASTER, BUS, SETTINGS

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 2.0
"""Seconds the server waits for running handlers on shutdown before cancelling them."""


async def _bus_ctx(app: web.Application) -> AsyncIterator[None]:
    bus = await Bus.open(app[SETTINGS])
    app[BUS] = bus
    yield
    await bus.close()


async def _broadcaster_ctx(app: web.Application) -> AsyncIterator[None]:
    broadcaster = Broadcaster(app[BUS])
    app[BROADCASTER] = broadcaster
    await broadcaster.start()
    yield
    await broadcaster.stop()


def check_bind(settings: Settings) -> None:
    """Refuse to listen beyond loopback without a token."""
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.token:
        raise ConfigError(
            f"BGAGENTS_HOST: refusing to listen on {settings.host} without BGAGENTS_TOKEN",
            hint="set BGAGENTS_TOKEN, or keep BGAGENTS_HOST=127.0.0.1",
        )


def create_app(settings: Settings) -> web.Application:
    """The web application: JSON API, SSE feed and health check."""
    check_bind(settings)
    app = web.Application(
        middlewares=[prom.timing_middleware, api.error_middleware, security.auth_middleware]
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_bus_ctx)
    app.cleanup_ctx.append(_broadcaster_ctx)
    api.setup_routes(app)
    security.setup_routes(app)
    sse.setup(app)  # /api/events, and its streams stopped on shutdown
    prom.setup(app)
    pages.setup(app)
    return app


def server_options(settings: Settings) -> dict[str, Any]:
    """Options for aiohttp's runner: a bounded shutdown, and the request-header timeout.

    aiohttp has no timeout of its own for reading a request's headers, but it
    closes a connection that has no request under way (a request's headers not
    yet complete count as none) once its keep-alive time is up, counted from
    the connection's start or the end of its last response. That time is
    ``settings.header_timeout``, so a client that trickles its headers
    (slowloris) is closed after it, and so is a keep-alive connection idle as
    long; clients open a new one.
    """
    return {
        "shutdown_timeout": SHUTDOWN_TIMEOUT,
        "keepalive_timeout": settings.header_timeout,
        "access_log": logging.getLogger("bgagents.access"),
    }


def run(settings: Settings) -> None:
    """Serve until interrupted, with an access log."""
    web.run_app(
        create_app(settings), host=settings.host, port=settings.port, print=None, **server_options(settings)
    )
