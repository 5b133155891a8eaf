"""Waiting on an event with a timeout, without losing a cancellation.

On Python 3.11, ``asyncio.wait_for`` can swallow a ``cancel()`` that arrives
just as the awaited event fires (fixed in 3.12), and a task that should stop
then runs on forever. ``asyncio.timeout`` has no such race.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; returns whether it was set."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(max(0.0, timeout)):
            await event.wait()
    except TimeoutError:
        return False
    return True
