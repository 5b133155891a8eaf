"""Typed application keys, shared by the web modules."""

from __future__ import annotations

import weakref

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from bus.client import Bus
from bus.config import Settings
from web.broadcaster import Broadcaster

SETTINGS = web.AppKey("settings", Settings)
BUS = web.AppKey("bus", Bus)
BROADCASTER = web.AppKey("broadcaster", Broadcaster)
STREAMS: web.AppKey[weakref.WeakSet[EventSourceResponse]] = web.AppKey("sse_streams")
"""The open SSE streams, stopped on shutdown."""
