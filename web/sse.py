"""Server-sent events: ``GET /api/events`` with resume from a cursor.

One :class:`Broadcaster` per process follows the event log and fans each event
out to the connected clients' bounded queues, so 500 clients cost one database
subscription, not 500. A client that sends ``Last-Event-ID`` (or ``?after=``;
the header wins) first gets the events after that cursor from the table, then
live ones, skipping any it already has: exactly the events after its cursor,
in order. Without a cursor it gets live events only. A cursor older than
retention gets a ``reset`` event. A client whose queue fills (it stopped
reading) is cut off, and reconnects with its cursor; it never delays the
others. The endpoint never answers 5xx: htmx's SSE extension drops
``Last-Event-ID`` after an error response.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from bus import db
from bus.client import Bus
from bus.errors import InvalidArgument
from bus.events import CursorExpired, Event, parse_cursor
from web.keys import BROADCASTER, BUS

logger = logging.getLogger(__name__)

QUEUE_SIZE = 1000
KEEPALIVE = 15.0
RETRY_MS = 2000


def position(cursor: str) -> tuple[int, int]:
    return parse_cursor(cursor)


COALESCE_EVERY = 0.25
REGIONS_OF = {"agents": ("agents", "health"), "alerts": ("alerts", "health"), "reports": ("report",)}


def regions_of(channel: str) -> tuple[str, ...]:
    """Dashboard regions an event on ``channel`` changes."""
    return (*REGIONS_OF.get(channel, ()), "events")


class Client:
    """One connected stream's bounded queue (or, coalescing, its dirty regions)."""

    def __init__(self, channels: set[str] | None, coalesce: bool = False) -> None:
        self.channels = channels
        self.coalesce = coalesce
        self.queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self.overflowed = asyncio.Event()
        self.dirty: set[str] = set()
        self.newest: str | None = None
        self.changed = asyncio.Event()

    def mark(self, *regions: str) -> None:
        self.dirty.update(regions)
        self.changed.set()

    def offer(self, event: Event) -> None:
        if self.channels is not None and event.channel not in self.channels:
            return
        if self.coalesce:
            self.newest = event.cursor
            self.mark(*regions_of(event.channel))
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed.set()  # stopped reading: cut it off, it resumes by cursor


class Broadcaster:
    """Follows ``bg.events`` once and hands each event to every client."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.clients: set[Client] = set()
        self.delivered = 0
        self.streams: weakref.WeakSet[EventSourceResponse] = weakref.WeakSet()
        self._task: asyncio.Task[None] | None = None
        self._tasks_watch: asyncio.Task[None] | None = None
        self._unlisten: Any = lambda: None

    async def start(self) -> None:
        start = await self.bus.events.current_cursor()
        self._task = asyncio.create_task(self._follow(start), name="sse-broadcaster")
        self._tasks_watch = asyncio.create_task(self._watch_tasks(), name="sse-tasks-watch")
        self._unlisten = self.bus.notifier.listen("bg_tasks", lambda _p: self._mark_tasks())

    async def stop(self) -> None:
        self._unlisten()
        for task in (self._task, self._tasks_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _mark_tasks(self) -> None:
        for client in list(self.clients):
            if client.coalesce:
                client.mark("tasks")

    async def _watch_tasks(self) -> None:
        """While a dashboard watches, poll queue statistics: claims and completions
        send no events (that would double the queue's writes), so look for changes."""
        last: Any = None
        while True:
            await asyncio.sleep(2.0)
            if not any(c.coalesce for c in self.clients):
                continue
            try:
                now = [tuple(r) for r in await db.run(self.bus.pool, "prom_queue")]
            except db.DB_ERRORS:
                continue
            if now != last:
                last = now
                self._mark_tasks()

    async def _follow(self, cursor: str) -> None:
        while True:
            try:
                async for event in self.bus.subscribe(None, after=cursor, poll_interval=1.0):
                    cursor = event.cursor
                    for client in list(self.clients):
                        client.offer(event)
            except CursorExpired:  # we fell behind retention: carry on from now
                cursor = await self.bus.events.current_cursor()

    def register(self, client: Client) -> None:
        self.clients.add(client)

    def unregister(self, client: Client) -> None:
        self.clients.discard(client)


def _channels(request: web.Request) -> set[str] | None:
    raw = request.query.get("channels", "")
    names = {c.strip() for c in raw.split(",") if c.strip()}
    for name in names:
        if len(name) > 100 or not all(ch.isalnum() or ch in "_.:-" for ch in name):
            raise InvalidArgument(f"parameter 'channels' has an invalid channel name {name!r}")
    return names or None


async def _send(resp: EventSourceResponse, event: Event) -> None:
    await resp.send(json.dumps(event.as_json()), id=event.cursor, event=event.channel)


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /api/events?channels=a,b``: every event after the client's cursor, then live."""
    channels = _channels(request)
    cursor = request.headers.get("Last-Event-ID") or request.query.get("after") or None
    if cursor is not None:
        try:
            parse_cursor(cursor)
        except InvalidArgument as exc:
            raise InvalidArgument(
                f"parameter 'after' / Last-Event-ID: {exc.message}", hint=exc.hint
            ) from None
    bus = request.app[BUS]
    coalesce = request.query.get("coalesce") in ("1", "true")
    client = Client(channels, coalesce)
    request.app[BROADCASTER].register(client)
    try:
        async with sse_response(request, ping_interval=KEEPALIVE, send_timeout=10) as resp:
            request.app[BROADCASTER].streams.add(resp)
            live_from: tuple[int, int] | None = None
            if cursor is None and not coalesce:
                # Live only: skip what the broadcaster still carries from before we came.
                # Read before the hello, so everything after the hello arrives.
                with contextlib.suppress(*db.TRANSIENT_ERRORS):
                    live_from = position(await bus.events.current_cursor())
            await resp.send("{}", event="hello", retry=RETRY_MS)
            if coalesce:
                await _coalesce(resp, client, cursor)
                return resp
            sent = live_from if cursor is None else await _replay(bus, resp, cursor, channels)
            while resp.is_connected():
                getter = asyncio.ensure_future(client.queue.get())
                overflow = asyncio.ensure_future(client.overflowed.wait())
                done, _ = await asyncio.wait({getter, overflow}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    logger.info("SSE client too slow (queue full): cut off; it resumes by cursor")
                    break
                overflow.cancel()
                event = getter.result()
                if sent is not None and position(event.cursor) <= sent:
                    continue  # already sent by the replay
                await _send(resp, event)
                sent = position(event.cursor)
                request.app[BROADCASTER].delivered += 1
            return resp
    except (ConnectionResetError, TimeoutError):
        # The client went away or stalled; it reconnects with its cursor.
        return web.Response(status=204)
    finally:
        request.app[BROADCASTER].unregister(client)


async def _coalesce(resp: EventSourceResponse, client: Client, cursor: str | None) -> None:
    """Send region names, at most once per region every 250 ms, keeping the trailing change."""
    client.newest = cursor
    while resp.is_connected():
        await client.changed.wait()
        client.changed.clear()
        regions, client.dirty = client.dirty, set()
        for region in sorted(regions):
            await resp.send("{}", id=client.newest, event=region)
        await asyncio.sleep(COALESCE_EVERY)


async def _replay(
    bus: Bus, resp: EventSourceResponse, cursor: str | None, channels: set[str] | None
) -> tuple[int, int] | None:
    """Send the events after ``cursor`` from the table; returns the last position sent."""
    if cursor is None:
        return None
    sent = position(cursor)
    wanted: Sequence[str] | None = sorted(channels) if channels else None
    while True:
        try:
            page = await bus.events.read_after(cursor, wanted, 500)
        except CursorExpired as exc:
            await resp.send(json.dumps({"reason": exc.message, "hint": exc.hint}), event="reset")
            return None
        except db.TRANSIENT_ERRORS:
            await resp.send(json.dumps({"reason": "database unavailable"}), event="retry", retry=RETRY_MS)
            resp.stop_streaming()
            return sent
        for event in page:
            await _send(resp, event)
            cursor = event.cursor
            sent = position(cursor)
        if len(page) < 500:
            return sent


async def stop_streams(app: web.Application) -> None:
    """On shutdown, end every stream cleanly (clients reconnect and resume)."""
    streams = list(app[BROADCASTER].streams)
    for stream in streams:
        stream.stop_streaming()
    await asyncio.gather(*(s.wait() for s in streams), return_exceptions=True)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/events", events, name="api_events")


def client_count(app: web.Application) -> int:
    return len(app[BROADCASTER].clients)
