"""Table upkeep: retention of events and finished tasks, and rescue of dead leases.

Any process may run it; the statements are idempotent, so several processes
doing it at once only repeat work. Workers run it every few minutes, and the
coordinator's leader will too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from bus import db
from bus.config import Settings
from bus.errors import BgError

logger = logging.getLogger(__name__)

_LOOP_ERRORS: tuple[type[BaseException], ...] = (BgError, *db.DB_ERRORS)
"""What a failed round raises; the loop logs it and tries again next round."""


@dataclass(frozen=True)
class MaintenanceReport:
    """What one round of upkeep removed or rescued."""

    events_pruned: int
    tasks_pruned: int
    tasks_rescued: int


async def run_once(pool: db.Pool | db.Connection, settings: Settings) -> MaintenanceReport:
    """Prune old events and finished tasks; fail tasks whose last lease expired."""
    events = await db.call(pool, "events_prune", timedelta(days=settings.event_retention_days))
    tasks = await db.call(pool, "queue_prune", timedelta(days=settings.task_retention_days))
    rescued = await db.call(pool, "queue_rescue")
    report = MaintenanceReport(int(events), int(tasks), int(rescued))
    if events or tasks or rescued:
        logger.info(
            "maintenance: pruned %d events and %d tasks, failed %d dead-lease tasks", events, tasks, rescued
        )
    return report


async def run_forever(pool: db.Pool, settings: Settings, interval: float = 300.0) -> None:
    """Run :func:`run_once` every ``interval`` seconds until cancelled."""
    while True:
        try:
            await run_once(pool, settings)
        except _LOOP_ERRORS as exc:
            logger.warning("maintenance: %s", exc)
        await asyncio.sleep(interval)
