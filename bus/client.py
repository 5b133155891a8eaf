"""``Bus``: one process's handle on the database: pool, notifier, events, queue, state.

async with Bus.connect(settings) as bus:
    await bus.publish("demo", {"n": 1})
    async for event in bus.subscribe(["demo"], after=cursor):
        ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any

from bus import db
from bus.config import Settings
from bus.events import Event, Events
from bus.notifier import Notifier
from bus.queue import Queue
from bus.state import SharedState
from bus.waker import Wakers
from bus.worker import Handler, Worker, WorkerConfig


class Bus:
    """Everything a process needs to coordinate through PostgreSQL."""

    def __init__(self, settings: Settings, pool: db.Pool, notifier: Notifier) -> None:
        self.settings = settings
        self.pool = pool
        self.notifier = notifier
        self.events = Events(pool, notifier)
        self.queue = Queue(pool)
        self.state = SharedState(pool)
        self.wakers = Wakers(notifier)

    @classmethod
    async def open(cls, settings: Settings, *, listen: bool = True) -> Bus:
        """Open the pool and (unless ``listen=False``) the LISTEN connection."""
        url = db.resolve_url(settings)
        pool = await db.create_pool(settings, url)
        notifier = Notifier(settings, settings.listen_url or url)
        if listen:
            try:
                await notifier.start()
            except BaseException:
                await pool.close()
                raise
        return cls(settings, pool, notifier)

    @classmethod
    def connect(cls, settings: Settings, *, listen: bool = True) -> _BusContext:
        """``async with Bus.connect(settings) as bus``."""
        return _BusContext(settings, listen)

    async def close(self) -> None:
        """Close the LISTEN connection and the pool."""
        self.wakers.close()
        await self.notifier.stop()
        await self.pool.close()

    async def publish(self, channel: str, payload: Any = None, **kwargs: Any) -> int:
        """Append an event to the durable log; returns its id."""
        return await self.events.publish(channel, payload, **kwargs)

    def subscribe(
        self, channels: Sequence[str] | None = None, after: str | None = None, **kwargs: Any
    ) -> AsyncIterator[Event]:
        """Every event after ``after`` (None: from now), in delivery order, then live ones."""
        return self.events.subscribe(channels, after, **kwargs)

    def worker(
        self, queue: str, handler: Handler, config: WorkerConfig | None = None, **overrides: Any
    ) -> Worker:
        """A worker for ``queue`` sharing this bus's pool, notifier and the queue's waker.

        ``overrides`` replace fields of ``config`` (default :class:`WorkerConfig`),
        e.g. ``bus.worker("mail", send, concurrency=4)``.
        """
        default = WorkerConfig(batch_max=self.settings.claim_batch_max)
        config = dataclasses.replace(config or default, **overrides)
        return Worker(self.pool, queue, handler, config, notifier=self.notifier, waker=self.wakers.get(queue))


class _BusContext:
    def __init__(self, settings: Settings, listen: bool) -> None:
        self._settings = settings
        self._listen = listen
        self._bus: Bus | None = None

    async def __aenter__(self) -> Bus:
        self._bus = await Bus.open(self._settings, listen=self._listen)
        return self._bus

    async def __aexit__(self, *exc: object) -> None:
        if self._bus is not None:
            await self._bus.close()
