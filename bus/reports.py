"""System reports' storage: the facts a report is built from, storing one, and the latest."""

from __future__ import annotations

from typing import Any

from bus import db


async def facts(pool: db.Pool | db.Connection, period_s: float) -> dict[str, Any]:
    """What happened in the last ``period_s`` seconds: agents, alerts, host metrics, slow queues."""
    return dict(await db.call(pool, "report_facts", float(period_s)))


async def store(pool: db.Pool | db.Connection, period_s: int, body: str, report_facts: dict[str, Any]) -> int:
    """Store a report's text and facts; returns its id."""
    return int(await db.call(pool, "report_store", period_s, body, report_facts))


async def latest(pool: db.Pool | db.Connection) -> dict[str, Any] | None:
    """The newest report as ``{id, created_at, period_s, body, facts}``, or None."""
    row = await db.call(pool, "report_latest")
    return dict(row) if row else None
