"""Agent instances in ``bg.agents``: registration, status, heartbeats, commands and leadership."""

from __future__ import annotations

from typing import Any

from bus import db
from bus.errors import DatabaseError, NotFound

COMMANDS = ("pause", "resume", "stop", "restart")

NO_DATA_FOUND = "P0002"
"""The SQLSTATE ``bg.agent_command`` raises when no running instance has the name."""


async def register(
    pool: db.Pool,
    instance_id: str,
    name: str,
    kind: str,
    host: str,
    pid: int,
    version: str,
    beat_interval_s: float,
) -> None:
    """Register (or re-register) one agent instance as starting."""
    await db.call(pool, "agent_register", instance_id, name, kind, host, pid, version, beat_interval_s)


async def set_status(pool: db.Pool, instance_id: str, status: str, note: str | None = None) -> None:
    """Record the instance's own lifecycle status, with an optional note."""
    await db.call(pool, "agent_set_status", instance_id, status, note)


async def beat(pool: db.Pool, instance_id: str, seq: int, cpu_percent: float, rss_bytes: int) -> str | None:
    """Record a heartbeat; returns the desired state (None: not registered or marked dead: register again)."""
    desired: str | None = await db.call(pool, "agent_beat", instance_id, seq, cpu_percent, rss_bytes)
    return desired


async def desired(pool: db.Pool, instance_id: str) -> str | None:
    """What the instance should be doing: running, paused or stopped (None: not registered)."""
    state: str | None = await db.call(pool, "agent_desired", instance_id)
    return state


async def command(pool: db.Pool, name: str, command: str) -> int:
    """Send ``command`` to every running instance of agent ``name``; returns how many.

    Raises :class:`NotFound` (with the running agents as the hint) when no
    instance of ``name`` runs, and :class:`InvalidArgument` for an unknown command.
    """
    try:
        count: int = await db.call(pool, "agent_command", name, command)
    except DatabaseError as exc:
        if exc.sqlstate == NO_DATA_FOUND:
            raise NotFound(exc.message, hint=exc.hint) from exc
        raise
    return count


async def status_list(pool: db.Pool) -> list[dict[str, Any]]:
    """Every agent instance with status, health, last beat, pid, host and note."""
    return [dict(r) for r in await db.call(pool, "agent_status_all")]


async def health_inputs(pool: db.Pool) -> list[dict[str, Any]]:
    """What the heartbeat agent needs to judge each live instance (status, health, beat age)."""
    return [dict(r) for r in await db.call(pool, "agent_health_inputs")]


async def set_health(pool: db.Pool, instance_id: str, health: str) -> None:
    """Record the heartbeat agent's verdict on one instance."""
    await db.call(pool, "agent_set_health", instance_id, health)


async def on_host(pool: db.Pool, host: str) -> list[dict[str, Any]]:
    """Live instances on ``host`` (instance_id, name, pid), for per-process sampling."""
    return [dict(r) for r in await db.call(pool, "agents_on_host", host)]


async def mark_dead(pool: db.Pool, after_s: float) -> list[dict[str, Any]]:
    """Mark instances whose beats stopped ``after_s`` seconds ago dead; returns them."""
    return [dict(r) for r in await db.call(pool, "agent_mark_dead", after_s)]


async def deregister_dead(pool: db.Pool, after_s: float) -> int:
    """Forget dead and stopped instances after ``after_s`` seconds; returns how many."""
    return int(await db.call(pool, "agent_deregister_dead", after_s))


async def take_lease(pool: db.Pool, role: str, holder: str, lease_s: float) -> str | None:
    """Take or keep the leadership lease of ``role`` for ``lease_s`` seconds; returns the holder."""
    leader: str | None = await db.call(pool, "lease_take", role, holder, lease_s)
    return leader


async def release_lease(pool: db.Pool, role: str, holder: str) -> None:
    """Give up the lease of ``role`` if ``holder`` has it."""
    await db.call(pool, "lease_release", role, holder)
