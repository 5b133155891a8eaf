"""The soak benchmark's steady load: tasks and events at fixed rates, heartbeats of simulated agents.

Only what the bus acknowledged counts as sent: a task whose ``bg.enqueue``
returned an id, an event whose publish returned one. A call that failed while
the server was away is counted apart (it may or may not have committed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bus import agents as instances
from bus.client import Bus
from bus.errors import DatabaseError

logger = logging.getLogger(__name__)

SOAK_QUEUE = "soak"
SOAK_CHANNEL = "soak"
MAX_ATTEMPTS = 3
"""Every soak task's attempts: a ``flaky`` one succeeds on its second, a ``doomed`` one fails all three."""


def mode_of(n: int) -> str:
    """Task ``n``'s planned behaviour (see :mod:`agents.bench.soak_handler`)."""
    if n % 50 == 49:
        return "doomed"
    if n % 10 == 3:
        return "flaky"
    return "ok"


async def _at_rate(rate: float, stop: asyncio.Event, step: Callable[[int], Awaitable[None]]) -> None:
    """Call ``step(n)`` ``rate`` times a second until ``stop`` is set (a late step is not made up twice)."""
    due = time.monotonic()
    n = 0
    while not stop.is_set():
        pause = due - time.monotonic()
        if pause > 0:
            try:
                await asyncio.wait_for(stop.wait(), pause)
                return
            except TimeoutError:
                pass
        await step(n)
        n += 1
        due = max(due + 1 / rate, time.monotonic() - 1.0)


@dataclass
class Load:
    """What the load sent and what the bus acknowledged."""

    bus: Bus
    began: float
    task_ids: dict[int, float] = field(default_factory=dict)
    """Acknowledged task id: seconds into the run when it was enqueued."""
    event_ids: set[int] = field(default_factory=set)
    task_errors: int = 0
    event_errors: int = 0
    beats: int = 0
    beat_errors: int = 0
    quiet: set[str] = field(default_factory=set)

    async def enqueue(self, rate: float, stop: asyncio.Event, work_s: float) -> None:
        """Enqueue tasks at ``rate``/s on :data:`SOAK_QUEUE`."""

        async def step(n: int) -> None:
            payload = {"n": n, "mode": mode_of(n), "work_s": work_s}
            try:
                task_id = await self.bus.queue.enqueue(SOAK_QUEUE, payload, max_attempts=MAX_ATTEMPTS)
            except DatabaseError:
                self.task_errors += 1
                return
            self.task_ids[task_id] = time.monotonic() - self.began

        await _at_rate(rate, stop, step)

    async def publish(self, rate: float, stop: asyncio.Event, pad: int) -> None:
        """Publish events at ``rate``/s on :data:`SOAK_CHANNEL`, each ``pad`` bytes of padding."""
        filler = "x" * pad

        async def step(n: int) -> None:
            try:
                event_id = await self.bus.publish(SOAK_CHANNEL, {"n": n, "t": time.time(), "pad": filler})
            except DatabaseError:
                self.event_errors += 1
                return
            self.event_ids.add(event_id)

        await _at_rate(rate, stop, step)

    async def burst(self, count: int, size: int, batch: int = 50) -> int:
        """Publish ``count`` events of ``size`` bytes at once (more than any socket buffers); how many."""
        filler = "y" * size
        sent = 0
        for first in range(0, count, batch):
            events = [
                (SOAK_CHANNEL, {"n": -1 - i, "t": time.time(), "pad": filler})
                for i in range(first, min(count, first + batch))
            ]
            try:
                self.event_ids.update(await self.bus.events.publish_many(events))
            except DatabaseError:
                self.event_errors += len(events)
                continue
            sent += len(events)
        return sent

    async def register(self, ids: list[str], host: str) -> None:
        """Register the simulated agents ``ids`` on ``host`` as running."""
        for i, instance in enumerate(ids):
            await instances.register(
                self.bus.pool, instance, f"sim-{i}", "simulated", host, os.getpid(), "soak", 1.0
            )
            await instances.set_status(self.bus.pool, instance, "running", None)

    async def heartbeats(self, ids: list[str], stop: asyncio.Event) -> None:
        """Beat every second for each agent in ``ids`` (skipping those in :attr:`quiet`) until ``stop``."""

        async def beat(instance: str) -> None:
            await asyncio.sleep(random.random())  # spread the beats over the second
            seq = 0
            while not stop.is_set():
                if instance not in self.quiet:
                    seq += 1
                    try:
                        await instances.beat(self.bus.pool, instance, seq, 0.0, 0)
                        self.beats += 1
                    except DatabaseError:
                        self.beat_errors += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

        await asyncio.gather(*(beat(i) for i in ids))
