"""Samples in ``bg.performance_metrics`` and ``bg.agent_heartbeats``: store, list and chart them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from bus import db


class Sample(NamedTuple):
    """One metric sample to store: who measured it, the metric and its value."""

    source: str
    instance_id: str | None
    metric: str
    value: float


async def insert(pool: db.Pool, host: str, samples: Sequence[Sample]) -> None:
    """Store a batch of samples taken now on ``host``."""
    await db.call(
        pool,
        "metrics_insert",
        host,
        [s.source for s in samples],
        [s.instance_id for s in samples],
        [s.metric for s in samples],
        [s.value for s in samples],
    )


async def series(pool: db.Pool, metric: str, since: datetime, limit: int = 5000) -> list[dict[str, Any]]:
    """Samples of ``metric`` since ``since``, oldest first (ts, source, instance_id, value)."""
    return [dict(r) for r in await db.call(pool, "metrics_series", metric, since, limit)]


async def names(pool: db.Pool) -> list[str]:
    """Metric names seen in the last hour, in order."""
    return [r["metric"] for r in await db.call(pool, "metrics_names")]


async def page_series_by_host(
    pool: db.Pool, metric: str, seconds: float, source: str = "host"
) -> dict[str, list[tuple[float, float]]]:
    """Per host, ``(epoch seconds, value)`` of one metric over the last ``seconds``, hosts in order."""
    found: dict[str, list[tuple[float, float]]] = {}
    for r in await db.call(pool, "page_series_by_host", metric, seconds, source):
        found.setdefault(r["host"], []).append((r["t"], r["value"]))
    return found


async def heartbeat_series(pool: db.Pool, name: str, limit: int = 120) -> list[dict[str, Any]]:
    """Agent ``name``'s heartbeats of the last 15 minutes across its instances, newest first."""
    return [dict(r) for r in await db.call(pool, "page_heartbeats", name, limit)]
