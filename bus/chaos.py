"""What the soak benchmark's chaos loop and audit ask of PostgreSQL (``bgagents bench soak``).

They run in the benchmark's scratch database (see :mod:`bus.scratch`); the
fault they inject is the one an operator or a failover would: the server ends
the LISTEN connections of our processes, which must reconnect and catch up.
"""

from __future__ import annotations

from dataclasses import dataclass

from bus import db


@dataclass(frozen=True)
class TaskOutcome:
    """One task of the soak's queue as it ended (times in epoch seconds, None when unset)."""

    id: int
    status: str
    attempts: int
    max_attempts: int
    mode: str | None
    created: float
    started: float | None
    finished: float | None


async def terminate_listeners(pool: db.Pool) -> list[int]:
    """End every LISTEN (notifier) connection of our processes in this database; their server pids."""
    return [int(r["pid"]) for r in await db.call(pool, "chaos_terminate_listeners")]


async def open_alerts(pool: db.Pool, host: str) -> int:
    """How many alerts of agents on ``host`` are pending or firing."""
    return int(await db.call(pool, "chaos_open_alerts", host))


async def alerts_raised(pool: db.Pool, host: str) -> int:
    """How many alerts were raised, in any state, for agents on ``host``."""
    return int(await db.call(pool, "chaos_alerts_raised", host))


async def task_outcomes(pool: db.Pool, queue: str) -> list[TaskOutcome]:
    """Every task of ``queue``, oldest first, with its status and times."""
    return [TaskOutcome(**dict(r)) for r in await db.call(pool, "chaos_tasks", queue)]


async def unsettled(pool: db.Pool, queue: str) -> int:
    """How many tasks of ``queue`` are still queued or running."""
    return int(await db.call(pool, "chaos_unsettled", queue))
