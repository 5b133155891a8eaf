"""Typed application keys, shared by the web modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from bus.client import Bus
from bus.config import Settings

if TYPE_CHECKING:
    from web.sse import Broadcaster

SETTINGS = web.AppKey("settings", Settings)
BUS = web.AppKey("bus", Bus)
BROADCASTER: web.AppKey[Broadcaster] = web.AppKey("broadcaster")
