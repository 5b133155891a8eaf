"""System health: the summary that ``bgagents status`` and ``/api/health`` report, and queue counts."""

from __future__ import annotations

from dataclasses import dataclass

from bus import db


@dataclass(frozen=True)
class QueueCount:
    """How many tasks of one queue are in one status, and the oldest ready one's age."""

    queue: str
    status: str
    tasks: int
    oldest_ready_s: float


async def queue_counts(pool: db.Pool) -> list[QueueCount]:
    """Tasks by queue and status (for /metrics and the dashboard's queue sampling)."""
    return [
        QueueCount(r["queue"], r["status"], r["tasks"], r["oldest_ready_s"])
        for r in await db.call(pool, "prom_queue")
    ]
