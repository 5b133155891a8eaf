"""SharedState: JSON values by key in ``bg.shared_state``, with compare-and-set.

Every write bumps the key's version. :meth:`SharedState.compare_and_set`
writes only when the version is still the one the caller read, so two agents
updating the same key never lose each other's writes silently.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bus import db
from bus.errors import ConflictError, InvalidArgument

JSON = Any


@dataclass(frozen=True)
class Versioned:
    """A value with the version it had when read."""

    value: JSON
    version: int
    updated_at: datetime


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= 400:
        raise InvalidArgument("a state key is a string of 1 to 400 characters")


class SharedState:
    """Key/value state shared by every agent through PostgreSQL."""

    def __init__(self, pool: db.Pool | db.Connection) -> None:
        self._pool = pool
        self._last_sample: tuple[float, int] | None = None

    async def get(self, key: str, default: JSON = None) -> JSON:
        """The value of ``key``, or ``default`` when it is not set."""
        found = await self.get_versioned(key)
        return default if found is None else found.value

    async def get_versioned(self, key: str) -> Versioned | None:
        """The value of ``key`` with its version, or None."""
        _check_key(key)
        row = await db.run(self._pool, "state_get", key)
        return None if row is None else Versioned(row["value"], row["version"], row["updated_at"])

    async def set(self, key: str, value: JSON) -> int:
        """Set ``key`` unconditionally; return its new version."""
        _check_key(key)
        version: int = await db.run(self._pool, "state_set", key, value)
        return version

    async def compare_and_set(self, key: str, value: JSON, expected_version: int | None) -> int:
        """Set ``key`` only if its version is ``expected_version`` (None: it must not exist).

        Returns the new version; raises :class:`ConflictError` when someone else
        wrote first, so the caller can re-read and try again.
        """
        _check_key(key)
        if expected_version is None:
            version = await db.run(self._pool, "state_insert_new", key, value)
        else:
            version = await db.run(self._pool, "state_cas", key, value, expected_version)
        if version is None:
            raise ConflictError(
                f"state key {key!r} changed since version {expected_version}",
                hint="read it again and retry",
            )
        return int(version)

    async def delete(self, key: str) -> bool:
        """Delete ``key``; return whether it existed."""
        _check_key(key)
        return bool(await db.run(self._pool, "state_delete", key))

    async def keys(self, prefix: str = "", limit: int = 1000) -> list[str]:
        """Keys that start with ``prefix``, in order."""
        return [r["key"] for r in await db.run(self._pool, "state_keys", prefix, limit)]

    async def get_statistics(self, top_tables: int = 10) -> dict[str, Any]:
        """Server version, database size, connections, the largest ``bg`` tables,
        and transactions per second since the previous call (None on the first)."""
        server = await db.run(self._pool, "stats_server")
        tables = await db.run(self._pool, "stats_tables", top_tables)
        now = time.monotonic()
        tps = None
        if self._last_sample is not None:
            elapsed = now - self._last_sample[0]
            if elapsed > 0:
                tps = round((server["transactions"] - self._last_sample[1]) / elapsed, 2)
        self._last_sample = (now, server["transactions"])
        return {
            "server_version": server["server_version"],
            "database_size_bytes": server["database_size"],
            "connections": server["connections"],
            "max_connections": server["max_connections"],
            "transactions_per_second": tps,
            "largest_tables": [
                {
                    "table": f"bg.{r['table_name']}",
                    "total_bytes": r["total_bytes"],
                    "estimated_rows": r["estimated_rows"],
                }
                for r in tables
            ],
        }

    async def get_system_health(self) -> dict[str, Any]:
        """Agents (status, health, last beat, pid, host), firing alerts and a summary.

        ``healthy`` is true when every live instance is up (or paused) and no
        alert fires; it is what ``bgagents status`` and ``/api/health`` report.
        """
        agents = [dict(r) for r in await db.run(self._pool, "agent_status_all")]
        alerts = [dict(r) for r in await db.run(self._pool, "alerts_firing")]
        counts = dict(await db.run(self._pool, "health_summary"))
        healthy = counts["down"] == 0 and counts["late"] == 0 and counts["firing"] == 0
        for agent in agents:
            for key in ("last_beat_at", "started_at"):
                if agent[key] is not None:
                    agent[key] = agent[key].isoformat()
            agent["beat_age_s"] = (
                None if agent["beat_age_s"] is None else round(float(agent["beat_age_s"]), 1)
            )
        for alert in alerts:
            for key in ("fired_at", "ack_expires_at"):
                if alert[key] is not None:
                    alert[key] = alert[key].isoformat()
        return {"healthy": healthy, "summary": counts, "agents": agents, "alerts": alerts}
