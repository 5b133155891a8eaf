"""The one SSE broadcaster per process: it follows the event log once and fans events out.

500 connected clients cost one database subscription, not 500. Each client
has its own bounded buffer, so a client that stops reading never delays the
others:

- a :class:`QueuedClient` (the plain stream) queues every event it wants; when
  its queue fills it is marked overflowed, the endpoint cuts it off, and it
  reconnects with its cursor;
- a :class:`CoalescingClient` (the dashboard's stream) keeps only the set of
  regions changed since its last send and the newest cursor, so a burst of
  events costs it nothing.

The dashboard's queue region changes without events (claims and completions
publish none, which would double the queue's writes), so while a coalescing
client is connected the broadcaster also follows ``bg_tasks`` notifications
and samples the queue counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from bus import health
from bus.client import Bus
from bus.errors import DatabaseError
from bus.events import CursorExpired, Event
from web import regions

logger = logging.getLogger(__name__)

QUEUE_SIZE = 1000
"""Events a plain client may have waiting before it is cut off."""

QUEUE_SAMPLE_EVERY = 2.0
"""Seconds between queue-count samples while a dashboard is connected."""


class Client:
    """One connected stream and the channels it wants (None: every channel)."""

    watches_queue = False
    """Whether queue changes (which send no events) concern this client."""

    def __init__(self, channels: set[str] | None) -> None:
        self.channels = channels

    def wants(self, event: Event) -> bool:
        """Whether ``event`` is on one of this client's channels."""
        return self.channels is None or event.channel in self.channels

    def offer(self, event: Event) -> None:
        """Take ``event`` without waiting (the broadcaster calls this for every event)."""
        raise NotImplementedError

    def queue_changed(self) -> None:
        """The task queue changed."""


class QueuedClient(Client):
    """A plain stream: every event it wants, in a bounded queue."""

    def __init__(self, channels: set[str] | None, size: int = QUEUE_SIZE) -> None:
        super().__init__(channels)
        self.queue: asyncio.Queue[Event] = asyncio.Queue(size)
        self.overflowed = asyncio.Event()

    def offer(self, event: Event) -> None:
        """Queue ``event``; a full queue marks the client overflowed."""
        if not self.wants(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed.set()  # stopped reading: cut it off, it resumes by cursor

    async def next(self) -> Event | None:
        """The next queued event, or None once the queue has overflowed."""
        getter = asyncio.ensure_future(self.queue.get())
        overflow = asyncio.ensure_future(self.overflowed.wait())
        try:
            done, _ = await asyncio.wait({getter, overflow}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when the stream itself is cancelled: leave no pending waiters behind
            overflow.cancel()
            if not getter.done():
                getter.cancel()
        if getter not in done:
            return None
        return getter.result()


class CoalescingClient(Client):
    """The dashboard's stream: the regions changed since the last send, and the newest cursor."""

    watches_queue = True

    def __init__(self, channels: set[str] | None, newest: str | None = None) -> None:
        super().__init__(channels)
        self.newest = newest
        self.dirty: set[str] = set()
        self.changed = asyncio.Event()

    def mark(self, *names: str) -> None:
        """Note that regions ``names`` changed."""
        self.dirty.update(names)
        self.changed.set()

    def offer(self, event: Event) -> None:
        """Mark the regions that ``event`` changes, and remember its cursor."""
        if not self.wants(event):
            return
        self.newest = event.cursor
        self.mark(*regions.regions_of(event.channel))

    def queue_changed(self) -> None:
        """Mark the queue's region."""
        self.mark(regions.TASKS)

    async def changes(self) -> tuple[list[str], str | None]:
        """Wait for a change; returns the changed regions (sorted) and the newest cursor."""
        await self.changed.wait()
        self.changed.clear()
        changed, self.dirty = self.dirty, set()
        return sorted(changed), self.newest


class Broadcaster:
    """Follows ``bg.events`` once and hands each event to every registered client."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.clients: set[Client] = set()
        self.delivered = 0
        self._task: asyncio.Task[None] | None = None
        self._queue_watch: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] = lambda: None

    async def start(self) -> None:
        """Start following the log from now, and watching the queue (idempotent)."""
        if self._task is not None:
            return
        start = await self.bus.events.current_cursor()
        self._task = asyncio.create_task(self._follow(start), name="sse-broadcaster")
        self._queue_watch = asyncio.create_task(self._watch_queue(), name="sse-tasks-watch")
        self._unlisten = self.bus.notifier.listen("bg_tasks", lambda _p: self._queue_changed())

    async def stop(self) -> None:
        """Stop following (idempotent)."""
        self._unlisten()
        self._unlisten = lambda: None
        tasks, self._task, self._queue_watch = (self._task, self._queue_watch), None, None
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def register(self, client: Client) -> None:
        """Start handing events to ``client``."""
        self.clients.add(client)

    def unregister(self, client: Client) -> None:
        """Stop handing events to ``client`` (it may already be gone)."""
        self.clients.discard(client)

    def _queue_changed(self) -> None:
        for client in list(self.clients):
            client.queue_changed()

    async def _watch_queue(self) -> None:
        """While a dashboard watches, sample the queue counts and report any change."""
        last: list[health.QueueCount] | None = None
        while True:
            await asyncio.sleep(QUEUE_SAMPLE_EVERY)
            if not any(c.watches_queue for c in self.clients):
                continue
            try:
                now = await health.queue_counts(self.bus.pool)
            except DatabaseError:
                continue
            if now != last:
                last = now
                self._queue_changed()

    async def _follow(self, cursor: str) -> None:
        while True:
            try:
                async for event in self.bus.subscribe(None, after=cursor, poll_interval=1.0):
                    cursor = event.cursor
                    for client in list(self.clients):
                        client.offer(event)
            except CursorExpired:  # we fell behind retention: carry on from now
                cursor = await self.bus.events.current_cursor()
