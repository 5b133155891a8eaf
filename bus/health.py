"""System health: the summary that ``bgagents status`` and ``/api/health`` report, database
statistics, queue health and counts, and the series behind ``/metrics``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bus import agents, alerts, db
from bus.errors import NotFound


@dataclass(frozen=True)
class QueueCount:
    """How many tasks of one queue are in one status, and the oldest ready one's age."""

    queue: str
    status: str
    tasks: int
    oldest_ready_s: float


@dataclass(frozen=True)
class QueueHealth:
    """One queue's oldest ready task's age (None: nothing ready) and its recent dead letters."""

    queue: str
    oldest_s: float | None
    failed_recent: int


async def queue_counts(pool: db.Pool) -> list[QueueCount]:
    """Tasks by queue and status (for /metrics and the dashboard's queue sampling)."""
    return [
        QueueCount(r["queue"], r["status"], r["tasks"], r["oldest_ready_s"])
        for r in await db.call(pool, "prom_queue")
    ]


async def queue_health(pool: db.Pool, failed_window_s: float = 600.0) -> list[QueueHealth]:
    """Per queue: the oldest ready task's age and the tasks failed for good in the last window."""
    return [
        QueueHealth(
            r["queue"],
            None if r["oldest_s"] is None else float(r["oldest_s"]),
            int(r["failed_recent"]),
        )
        for r in await db.call(pool, "queue_health", failed_window_s)
    ]


async def queue_depth_total(pool: db.Pool) -> float:
    """Queued tasks across every queue (sampled as ``queue.depth``)."""
    return float(await db.call(pool, "queue_depth_total"))


async def system_summary(pool: db.Pool) -> dict[str, Any]:
    """Agents (status, health, last beat, pid, host), firing alerts and a summary.

    ``healthy`` is true when every live instance is up (or paused) and no
    alert fires; it is what ``bgagents status`` and ``/api/health`` report.
    """
    instances = await agents.status_list(pool)
    firing = await alerts.firing(pool)
    counts = dict(await db.call(pool, "health_summary"))
    healthy = counts["down"] == 0 and counts["late"] == 0 and counts["firing"] == 0
    for agent in instances:
        for key in ("last_beat_at", "started_at"):
            if agent[key] is not None:
                agent[key] = agent[key].isoformat()
        agent["beat_age_s"] = None if agent["beat_age_s"] is None else round(float(agent["beat_age_s"]), 1)
    for alert in firing:
        for key in ("fired_at", "ack_expires_at"):
            if alert[key] is not None:
                alert[key] = alert[key].isoformat()
    return {"healthy": healthy, "summary": counts, "agents": instances, "alerts": firing}


async def statistics(pool: db.Pool | db.Connection, top_tables: int = 10) -> dict[str, Any]:
    """Server version, database size, connections, the largest ``bg`` tables, and transactions
    per second averaged since the database's statistics were reset (or the server started)."""
    server = await db.call(pool, "stats_server")
    tables = await db.call(pool, "stats_tables", top_tables)
    tps = server["transactions_per_second"]
    return {
        "server_version": server["server_version"],
        "database_size_bytes": server["database_size"],
        "connections": server["connections"],
        "max_connections": server["max_connections"],
        "transactions_per_second": None if tps is None else round(float(tps), 2),
        "largest_tables": [
            {
                "table": f"bg.{r['table_name']}",
                "total_bytes": r["total_bytes"],
                "estimated_rows": r["estimated_rows"],
            }
            for r in tables
        ],
    }


async def prom_agents(pool: db.Pool) -> list[dict[str, Any]]:
    """Every agent instance with status, health and beat age (name, instance_id, host, ...)."""
    return [dict(r) for r in await db.call(pool, "prom_agents")]


async def prom_alerts(pool: db.Pool) -> list[dict[str, Any]]:
    """Alert counts by state and severity (state, severity, n)."""
    return [dict(r) for r in await db.call(pool, "prom_alerts")]


async def events_total(pool: db.Pool) -> int:
    """The newest event id: a counter of the events ever published."""
    return int(await db.call(pool, "prom_events_total"))


PREVIEW_CHARS = 200
"""How much of a payload's JSON the dashboard's lists show; the rest stays in the database."""


async def recent_events(
    pool: db.Pool, channel: str | None = None, limit: int = 50, preview_chars: int = PREVIEW_CHARS
) -> list[dict[str, Any]]:
    """The newest events (of ``channel``, or any), newest first, for the dashboard's event log.

    Each has ``payload_preview`` (the first ``preview_chars`` characters of its JSON) and
    ``payload_truncated`` instead of the payload, so one huge event never fills the list.
    """
    return [dict(r) for r in await db.call(pool, "page_events_recent", channel, limit, preview_chars)]


async def event(pool: db.Pool, event_id: int) -> dict[str, Any]:
    """One event with its whole payload; :class:`NotFound` if there is none with that id."""
    row = await db.call(pool, "page_event", event_id)
    if row is None:
        raise NotFound(f"no event {event_id}")
    return dict(row)


async def recent_tasks(
    pool: db.Pool,
    queue: str | None = None,
    status: str | None = None,
    limit: int = 100,
    preview_chars: int = PREVIEW_CHARS,
) -> list[dict[str, Any]]:
    """Tasks by queue and status, newest first, with a ``payload_preview`` as :func:`recent_events`."""
    return [dict(r) for r in await db.call(pool, "page_tasks_recent", queue, status, limit, preview_chars)]
