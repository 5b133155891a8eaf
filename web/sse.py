"""Server-sent events: ``GET /api/events``, a replay from the client's cursor, then live events.

The stream comes in two modes, one small function each:

- :func:`plain` delivers every event. A client that sends ``Last-Event-ID``
  (or ``?after=``; the header wins) first gets the events after that cursor
  from the table, then live ones from the :class:`~web.broadcaster.Broadcaster`,
  skipping any it already has: exactly the events after its cursor, in order.
  Without a cursor it gets live events only. A cursor older than retention
  gets a ``reset`` event.
- :func:`coalesced` (``?coalesce=1``, the dashboard) sends region names, not
  events: at most one per region every 250 ms, never dropping the trailing
  change, each with the newest cursor as its id.

Every stream starts with a ``hello`` (carrying ``retry:``), and a keepalive
comment follows every 15 s. A client that stops reading is cut off, never
delaying the others, and reconnects with its cursor. A client that went away
is noticed within :data:`CHECK_EVERY` seconds even on a silent channel (the
stream watches its transport, not only its writes), so it leaves the
broadcaster, and the ``bgagents_sse_clients`` gauge, at once. Beyond
``settings.max_streams`` open streams a client gets a 429 with ``Retry-After``.
A malformed cursor gets a 400 naming the parameter before the stream opens.
The endpoint never answers 5xx: htmx's SSE extension drops ``Last-Event-ID``
after an error response. On shutdown every open stream is stopped, so clients
resume.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import weakref
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from bus.client import Bus
from bus.errors import DatabaseUnavailable, InvalidArgument
from bus.events import CursorExpired, Event, parse_cursor
from web.api.common import json_error
from web.broadcaster import Broadcaster, Client, CoalescingClient, QueuedClient
from web.keys import BROADCASTER, BUS, SETTINGS, STREAMS

logger = logging.getLogger(__name__)

KEEPALIVE = 15.0
"""Seconds between keepalive comments."""

RETRY_MS = 2000
"""The reconnect delay the stream asks for (``retry:``)."""

SEND_TIMEOUT = 10.0
"""Seconds a send may take before the client counts as stalled."""

COALESCE_EVERY = 0.25
"""The coalesced stream names a region at most once per this many seconds."""

REPLAY_PAGE = 500
"""Events read from the table per page of a replay."""

CHECK_EVERY = 1.0
"""Seconds between checks that a stream's client is still connected."""

RETRY_AFTER = 5
"""Seconds a client turned away by the stream cap is asked to wait (``Retry-After``)."""

_CURSOR = re.compile(r"[0-9]{1,19}:[0-9]{1,19}", re.ASCII)
BIGINT_MAX = 2**63 - 1

Position = tuple[int, int]
Mode = Callable[[EventSourceResponse], Awaitable[None]]


def _channels(request: web.Request) -> set[str] | None:
    raw = request.query.get("channels", "")
    names = {c.strip() for c in raw.split(",") if c.strip()}
    for name in names:
        if len(name) > 100 or not all(ch.isalnum() or ch in "_.:-" for ch in name):
            raise InvalidArgument(f"parameter 'channels' has an invalid channel name {name!r}")
    return names or None


def _cursor(request: web.Request) -> str | None:
    """The client's cursor: ``Last-Event-ID``, else ``?after=``, else None; malformed: 400."""
    header = request.headers.get("Last-Event-ID")
    if header:
        return _checked_cursor("Last-Event-ID", header)
    after = request.query.get("after")
    return _checked_cursor("after", after) if after else None


def _checked_cursor(name: str, cursor: str) -> str:
    """``cursor`` if it is two ASCII-digit bigints joined by a colon; else InvalidArgument naming ``name``."""
    hint = "a cursor looks like '1234:56': the id of an event this stream sent"
    if _CURSOR.fullmatch(cursor) is None or any(int(part) > BIGINT_MAX for part in cursor.split(":")):
        raise InvalidArgument(f"parameter {name!r} is not an event cursor", hint=hint)
    try:
        parse_cursor(cursor)
    except (InvalidArgument, ValueError, OverflowError):
        raise InvalidArgument(f"parameter {name!r} is not an event cursor", hint=hint) from None
    return cursor


def _over_cap(request: web.Request) -> web.Response | None:
    """A 429 with ``Retry-After`` when this process already serves ``max_streams`` streams."""
    cap = request.app[SETTINGS].max_streams
    if len(request.app[BROADCASTER].clients) < cap:
        return None
    resp = json_error(
        429,
        f"too many event streams open ({cap}, BGAGENTS_MAX_STREAMS)",
        f"retry in {RETRY_AFTER} s; close other tabs or raise BGAGENTS_MAX_STREAMS",
    )
    resp.headers["Retry-After"] = str(RETRY_AFTER)
    return resp


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /api/events?channels=a,b``: every event after the client's cursor, then live."""
    channels = _channels(request)
    cursor = _cursor(request)
    full = _over_cap(request)
    if full is not None:
        return full
    if request.query.get("coalesce") in ("1", "true"):
        regions = CoalescingClient(channels, newest=cursor)
        return await _stream(request, regions, lambda resp: coalesced(resp, regions))
    bus, broadcaster = request.app[BUS], request.app[BROADCASTER]
    queued = QueuedClient(channels)
    return await _stream(request, queued, lambda resp: plain(resp, bus, broadcaster, queued, cursor))


async def _stream(request: web.Request, client: Client, mode: Mode) -> web.StreamResponse:
    """Open the event stream with ``client`` registered, and run ``mode`` on it until it ends.

    ``mode`` runs beside a watch on the connection: when the client goes away
    (even on a silent channel, where no write would notice) or the stream is
    stopped (shutdown), ``mode`` is cancelled and ``client`` leaves the broadcaster.
    """
    broadcaster = request.app[BROADCASTER]
    broadcaster.register(client)
    try:
        async with sse_response(request, ping_interval=KEEPALIVE, send_timeout=SEND_TIMEOUT) as resp:
            request.app[STREAMS].add(resp)
            await _until_gone(request, resp, mode(resp))  # a client gone or stalled resumes by cursor
            return resp
    except (ConnectionResetError, TimeoutError):
        # The client went away or stalled; it reconnects with its cursor.
        return web.Response(status=204)
    finally:
        broadcaster.unregister(client)


def connected(request: web.Request, resp: EventSourceResponse) -> bool:
    """Whether the stream is open and its client still connected."""
    transport = request.transport
    return resp.is_connected() and transport is not None and not transport.is_closing()


async def _until_gone(request: web.Request, resp: EventSourceResponse, work: Awaitable[None]) -> None:
    """Run ``work`` until it ends, the client disconnects or the stream is stopped."""
    task = asyncio.ensure_future(work)
    try:
        while connected(request, resp):
            done, _ = await asyncio.wait({task}, timeout=CHECK_EVERY)
            if done:
                break
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    exc = None if task.cancelled() else task.exception()
    if exc is not None and not isinstance(exc, ConnectionResetError | TimeoutError):
        # The response is under way: no error status can be sent; the client reconnects.
        logger.warning("SSE stream ended by %s: %s", type(exc).__name__, exc)


async def _hello(resp: EventSourceResponse) -> None:
    await resp.send("{}", event="hello", retry=RETRY_MS)


async def _send(resp: EventSourceResponse, event: Event) -> None:
    await resp.send(json.dumps(event.as_json()), id=event.cursor, event=event.channel)


async def plain(
    resp: EventSourceResponse, bus: Bus, broadcaster: Broadcaster, client: QueuedClient, cursor: str | None
) -> None:
    """Every event after ``cursor`` (None: from now on), each once, in order."""
    if cursor is None:
        # Live only: skip what the broadcaster still carries from before we came.
        # Read before the hello, so everything after the hello arrives.
        sent = await _now(bus)
        await _hello(resp)
    else:
        await _hello(resp)
        sent = await _replay(resp, bus, cursor, client.channels)
    while resp.is_connected():
        event = await client.next()
        if event is None:
            logger.info("SSE client too slow (queue full): cut off; it resumes by cursor")
            break
        if sent is not None and parse_cursor(event.cursor) <= sent:
            continue  # already sent by the replay
        await _send(resp, event)
        sent = parse_cursor(event.cursor)
        broadcaster.delivered += 1


async def coalesced(resp: EventSourceResponse, client: CoalescingClient) -> None:
    """Region names, at most once per region every 250 ms, keeping the trailing change."""
    await _hello(resp)
    while resp.is_connected():
        changed, newest = await client.changes()
        for region in changed:
            await resp.send("{}", id=newest, event=region)
        await asyncio.sleep(COALESCE_EVERY)


async def _now(bus: Bus) -> Position | None:
    """The position of "now", or None when the database is unreachable."""
    try:
        return parse_cursor(await bus.events.current_cursor())
    except DatabaseUnavailable:
        return None


async def _replay(
    resp: EventSourceResponse, bus: Bus, cursor: str, channels: set[str] | None
) -> Position | None:
    """Send the events after ``cursor`` from the table; returns the last position sent.

    A cursor older than retention gets a ``reset`` event (and None: send
    everything live). While the database is unreachable the client gets a
    ``retry`` event and the stream ends, so it reconnects with its cursor.
    """
    sent = parse_cursor(cursor)
    wanted = sorted(channels) if channels else None
    while True:
        try:
            page = await bus.events.read_after(cursor, wanted, REPLAY_PAGE)
        except CursorExpired as exc:
            await resp.send(json.dumps({"reason": exc.message, "hint": exc.hint}), event="reset")
            return None
        except DatabaseUnavailable:
            await resp.send(json.dumps({"reason": "database unavailable"}), event="retry", retry=RETRY_MS)
            resp.stop_streaming()
            return sent
        for event in page:
            await _send(resp, event)
            cursor = event.cursor
            sent = parse_cursor(cursor)
        if len(page) < REPLAY_PAGE:
            return sent


async def stop_streams(app: web.Application) -> None:
    """On shutdown, end every stream cleanly (clients reconnect and resume)."""
    streams = [s for s in app[STREAMS] if s.is_connected()]
    for stream in streams:
        stream.stop_streaming()
    # The handlers notice within CHECK_EVERY; the runner's shutdown_timeout bounds the rest.
    await asyncio.gather(*(s.wait() for s in streams), return_exceptions=True)


def setup(app: web.Application) -> None:
    """Serve ``/api/events``, and stop its open streams on shutdown."""
    streams: weakref.WeakSet[EventSourceResponse] = weakref.WeakSet()
    app[STREAMS] = streams
    app.router.add_get("/api/events", events, name="api_events")
    app.on_shutdown.append(stop_streams)
