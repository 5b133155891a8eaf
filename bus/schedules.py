"""Cron-style periodic tasks stored in ``bg.schedules``.

``bg.fire_schedules()`` enqueues each due tick exactly once, however many
processes call it: it claims a tick by advancing ``next_run`` with a
conditional update (``... where next_run = <tick>``), in the same transaction as
the enqueue. Every worker process runs :func:`run_scheduler`, so schedules fire
as long as any worker is up. Cron expressions have five fields in UTC, or
``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from bus import db
from bus.errors import BgError

logger = logging.getLogger(__name__)

_LOOP_ERRORS: tuple[type[BaseException], ...] = (BgError, *db.DB_ERRORS)
"""What a failed round raises; the loop logs it and tries again next round."""


async def add(
    pool: db.Pool | db.Connection,
    name: str,
    cron: str,
    queue: str,
    payload: Any = None,
    priority: int = 0,
) -> datetime:
    """Add or replace a schedule; returns its first run."""
    first: datetime = await db.call(pool, "schedules_add", name, cron, queue, payload or {}, priority)
    return first


async def remove(pool: db.Pool | db.Connection, name: str) -> bool:
    """Remove a schedule; returns whether it existed."""
    return bool(await db.call(pool, "schedules_remove", name))


async def list_all(pool: db.Pool | db.Connection) -> list[dict[str, Any]]:
    """Every schedule, in name order."""
    return [dict(r) for r in await db.call(pool, "schedules_list")]


async def fire_due(pool: db.Pool | db.Connection) -> int:
    """Enqueue every due tick once; returns how many fired."""
    return int(await db.call(pool, "schedules_fire"))


async def run_scheduler(pool: db.Pool, interval: float = 1.0) -> None:
    """Fire due schedules every ``interval`` seconds until cancelled."""
    while True:
        try:
            fired = await fire_due(pool)
            if fired:
                logger.info("fired %d scheduled task(s)", fired)
        except _LOOP_ERRORS as exc:
            logger.warning("scheduler: %s", exc)
        await asyncio.sleep(interval)
