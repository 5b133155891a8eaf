"""The aiohttp application factory: typed state, resources from ``cleanup_ctx``.

``create_app(settings)`` builds the app; :func:`run` serves it. State lives in
typed ``AppKey``s (aiohttp's "no singletons"): the :class:`Bus` and the SSE
broadcaster. On shutdown every SSE stream is stopped first, so clients
reconnect and resume from their cursor.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from bus.client import Bus
from bus.config import Settings
from bus.errors import ConfigError
from web import api, pages, prom, security, sse
from web.broadcaster import Broadcaster
from web.keys import BROADCASTER, BUS, SETTINGS

logger = logging.getLogger(__name__)


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


def run(settings: Settings) -> None:
    """Serve until interrupted, with an access log."""
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=logging.getLogger("bgagents.access"),
        print=None,
    )
