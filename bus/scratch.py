"""The benchmarks' scratch database: created when missing, migrated, and emptied between runs.

Benchmarks run in their own database (:data:`BENCH_DB`) on the configured
server, so they never touch a user's data. The functions here are the only
things a benchmark does to PostgreSQL besides using the bus like any process:
they empty the tables a run fills and report what it measures. Third-party
libraries that a benchmark compares us against (PGQueuer) take a driver
connection of their own, from :func:`driver_connection`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bus import db, migrate
from bus.config import Settings
from bus.errors import BgError, ConnectError
from bus.server import describe

BENCH_DB = "bgagents_bench"
"""The scratch database's name: a constant, so it is the one identifier we interpolate."""

_PLACEHOLDER = '"{database}"'
_DRIVER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RelationSize:
    """One table of schema ``bg``: its own size and its indexes' size, in bytes."""

    name: str
    table_bytes: int
    index_bytes: int


def quote_ident(name: str) -> str:
    """``name`` as a PostgreSQL quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


def scratch_url(url: str, name: str = BENCH_DB) -> str:
    """``url`` pointing at database ``name`` on the same server, with the same options."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def _create_database(conn: db.Connection, name: str) -> None:
    # CREATE DATABASE takes no bind parameters; see bench_create_database in sql/queries/bench.sql.
    statement = db.sql_text("bench_create_database").replace(_PLACEHOLDER, quote_ident(name))
    try:
        await conn.execute(statement)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise BgError(
            f"the benchmark needs its own database {name!r}: {exc}",
            hint=f"CREATE DATABASE {name} as a superuser, or grant CREATEDB",
        ) from exc
    except asyncpg.DuplicateDatabaseError:
        pass  # another run created it at the same moment


async def prepare(settings: Settings, name: str = BENCH_DB) -> str:
    """URL of the migrated scratch database ``name`` on the configured server, created if missing."""
    url = db.resolve_url(settings)
    async with db.connection(settings, url) as conn:
        if not await db.call(conn, "bench_database_exists", name):
            await _create_database(conn, name)
    bench_url = scratch_url(url, name)
    async with db.connection(settings, bench_url) as conn:
        await migrate.migrate(conn)
    return bench_url


async def empty_tasks(pool: db.Pool) -> None:
    """Empty the queue (before and after a queue benchmark)."""
    await db.call(pool, "bench_empty_tasks")


async def may_checkpoint(conn: db.Connection | db.Pool) -> bool:
    """Whether this user may run CHECKPOINT (a superuser, or a member of pg_checkpoint)."""
    return bool(await db.call(conn, "bench_may_checkpoint"))


async def checkpoint(conn: db.Connection | db.Pool) -> None:
    """Run CHECKPOINT (before a benchmark round, so that none lands inside it)."""
    await db.call(conn, "bench_checkpoint")


async def analyze_tasks(pool: db.Pool) -> None:
    """Refresh the planner's statistics of the queue after pre-filling it."""
    await db.call(pool, "bench_analyze_tasks")


async def analyze_pgqueuer(conn: db.Connection) -> None:
    """Refresh the planner's statistics of PGQueuer's queue table after pre-filling it."""
    await db.call(conn, "bench_analyze_pgqueuer")


async def empty_events(pool: db.Pool) -> None:
    """Empty the event log (after an events benchmark)."""
    await db.call(pool, "bench_empty_events")


async def forget_host_agents(pool: db.Pool, host: str) -> None:
    """Remove the agents registered from ``host`` (a benchmark's simulated ones)."""
    await db.call(pool, "bench_forget_host_agents", host)


async def clear_alerts(pool: db.Pool) -> None:
    """Remove every alert, so that a run counts only the alerts it raised."""
    await db.call(pool, "bench_clear_alerts")


async def agent_down_alerts(pool: db.Pool, host: str) -> int:
    """How many ``agent_down`` alerts were raised for agents on ``host``."""
    return int(await db.call(pool, "bench_agent_down_alerts", host))


async def relation_sizes(pool: db.Pool) -> list[RelationSize]:
    """Each table of schema ``bg`` with its own and its indexes' size, largest first."""
    return [
        RelationSize(r["name"], r["table_bytes"], r["index_bytes"])
        for r in await db.call(pool, "bench_relation_sizes")
    ]


@asynccontextmanager
async def driver_connection(url: str, timeout: float = _DRIVER_TIMEOUT_S) -> AsyncIterator[db.Connection]:
    """A raw driver connection for third-party libraries that take one, closed afterwards.

    Unlike :func:`bus.db.connect` it has none of our codecs (JSON, pgvector), so
    the library sees the driver exactly as it expects to.
    """
    try:
        conn: db.Connection = await asyncpg.connect(url, timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise ConnectError(f"cannot connect to PostgreSQL at {describe(url)}: {exc}") from exc
    try:
        yield conn
    finally:
        await conn.close()
