"""Upkeep of the monitoring tables: retention of heartbeats, metrics and alert history, and ANALYZE."""

from __future__ import annotations

from datetime import timedelta

from bus import db


async def prune_heartbeats(pool: db.Pool, older_than: timedelta) -> int:
    """Delete heartbeats older than ``older_than``; returns how many."""
    return int(await db.call(pool, "retention_heartbeats", older_than))


async def prune_metrics(pool: db.Pool, older_than: timedelta) -> int:
    """Delete performance metrics older than ``older_than``; returns how many."""
    return int(await db.call(pool, "retention_metrics", older_than))


async def prune_alerts(pool: db.Pool, older_than: timedelta) -> int:
    """Delete alerts resolved more than ``older_than`` ago; returns how many."""
    return int(await db.call(pool, "retention_alerts", older_than))


async def analyze_hot_tables(pool: db.Pool) -> None:
    """Refresh the planner statistics of the tables that change all the time."""
    await db.call(pool, "analyze_hot_tables")
