"""Alerts and silences in ``bg.alerts`` and ``bg.silences``: open, fire, resolve, ack, list, mute."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bus import db
from bus.errors import InvalidArgument, NotFound

STATES = ("pending", "firing", "resolved")


def _row(record: Any) -> dict[str, Any] | None:
    return None if record is None else dict(record)


async def open_alerts(pool: db.Pool, rules: Sequence[str]) -> list[dict[str, Any]]:
    """Open (pending or firing) alerts of ``rules``."""
    return [dict(r) for r in await db.call(pool, "alerts_open", list(rules))]


async def open_alert(
    pool: db.Pool,
    fingerprint: str,
    rule: str,
    labels: dict[str, str],
    severity: str,
    summary: str,
    value: float | None = None,
) -> dict[str, Any]:
    """Open a pending alert unless one with ``fingerprint`` is open; returns the open alert."""
    row = await db.call(pool, "alert_open", fingerprint, rule, labels, severity, summary, value)
    return dict(row)


async def fire(pool: db.Pool, alert_id: int) -> dict[str, Any] | None:
    """Move a pending alert to firing; returns it, or None when it was not pending."""
    return _row(await db.call(pool, "alert_fire", alert_id))


async def resolve(pool: db.Pool, alert_id: int) -> dict[str, Any] | None:
    """Resolve an open alert (its acknowledgement ends with it); None when it was not open."""
    return _row(await db.call(pool, "alert_resolve", alert_id))


async def mark_notified(pool: db.Pool, alert_id: int) -> None:
    """Remember that the alert was just notified (for the repeat interval)."""
    await db.call(pool, "alert_notified", alert_id)


async def get(pool: db.Pool, alert_id: int) -> dict[str, Any]:
    """One alert; raises :class:`NotFound` when there is none."""
    row = await db.call(pool, "alert_get", alert_id)
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    return dict(row)


async def ack(pool: db.Pool, alert_id: int, by: str, comment: str, expires_in_s: float) -> dict[str, Any]:
    """Acknowledge an open alert (who, comment, expiry); returns it.

    Raises :class:`NotFound` for no such alert and :class:`InvalidArgument` for a resolved one.
    """
    row = await db.call(pool, "alert_ack", alert_id, by, comment, expires_in_s)
    if row is None:
        await get(pool, alert_id)  # NotFound if missing
        raise InvalidArgument(f"alert {alert_id} is resolved; there is nothing to acknowledge")
    return dict(row)


async def firing(pool: db.Pool) -> list[dict[str, Any]]:
    """Firing alerts, most severe first."""
    return [dict(r) for r in await db.call(pool, "alerts_firing")]


async def list_alerts(
    pool: db.Pool,
    state: str | None = None,
    *,
    acked: bool | None = None,
    silenced: bool | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Alerts, newest first, with ``acked`` and ``silenced`` flags; every filter applies before ``limit``."""
    return [dict(r) for r in await db.call(pool, "alerts_filtered", state, limit, acked, silenced)]


async def active_silences(pool: db.Pool) -> list[dict[str, Any]]:
    """Silences in force now (id, matchers, ends_at)."""
    return [dict(r) for r in await db.call(pool, "silences_active")]


async def list_silences(pool: db.Pool) -> list[dict[str, Any]]:
    """Silences, active first, then the most recently ended (at most 200)."""
    return [dict(r) for r in await db.call(pool, "silences_list")]


async def add_silence(
    pool: db.Pool, matchers: dict[str, Any], by: str, comment: str, duration_s: float
) -> int:
    """Mute alerts whose labels match ``matchers`` for ``duration_s`` seconds; returns the silence id."""
    return int(await db.call(pool, "silence_add", matchers, by, comment, duration_s))


async def expire_silence(pool: db.Pool, silence_id: int) -> None:
    """End a silence now; raises :class:`NotFound` when no such silence is active."""
    if not await db.call(pool, "silence_expire", silence_id):
        raise NotFound(f"no active silence {silence_id}")
