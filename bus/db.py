"""Connections: the asyncpg pool, single connections, and named-query calls.

Each connection is initialised the same way: JSON codecs for ``json`` and
``jsonb``, and pgvector's codec where the extension exists. Driver errors on
connect become one clear :class:`ConnectError` line that names the server
(never the password) and the likely fix.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg

from bus.config import Settings
from bus.errors import ConnectError, DatabaseError, DatabaseUnavailable, from_driver
from bus.server import describe, listen_url, resolve_url
from sql import Query, queries

logger = logging.getLogger(__name__)

Connection: TypeAlias = asyncpg.Connection
Pool: TypeAlias = asyncpg.Pool

__all__ = [
    "Connection",
    "Pool",
    "call",
    "connect",
    "connection",
    "create_pool",
    "describe",
    "listen_url",
    "queries",
    "resolve_url",
    "run",
    "sql_text",
    "sync_limits",
]


async def _init_connection(conn: Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    if await run(conn, "connection_has_vector"):
        from pgvector.asyncpg import register_vector

        await register_vector(conn)


def _connect_error(url: str, exc: BaseException) -> ConnectError:
    where = describe(url)
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return ConnectError(
            f"PostgreSQL at {where} refused the login: {exc}",
            hint="check the user and password in DATABASE_URL",
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return ConnectError(f"PostgreSQL at {where}: {exc}", hint="create the database or fix DATABASE_URL")
    if isinstance(exc, socket.gaierror):
        return ConnectError(f"cannot resolve the host of {where}: {exc.strerror}", hint="check DATABASE_URL")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return ConnectError(
            f"timed out connecting to PostgreSQL at {where}",
            hint="check DATABASE_URL and BGAGENTS_CONNECT_TIMEOUT",
        )
    if isinstance(exc, ConnectionRefusedError):
        return ConnectError(
            f"cannot connect to PostgreSQL at {where}: connection refused",
            hint="is the server running? check DATABASE_URL",
        )
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        return ConnectError(
            f"cannot connect to PostgreSQL at {where}: {reason}",
            hint="is the server running? check DATABASE_URL",
        )
    if isinstance(exc, ValueError | asyncpg.ClientConfigurationError | ssl.SSLError):
        return ConnectError(f"bad connection URL {where}: {exc}", hint="check DATABASE_URL")
    return ConnectError(f"cannot connect to PostgreSQL at {where}: {exc}")


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # e.g. a pooled connection caught mid-query by a restart
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.CrashShutdownError,
    DatabaseUnavailable,
)
"""Errors after which the same query may succeed once the server is back."""

DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    DatabaseError,
)
"""Any failure of a query, for loops that log and carry on."""

_CONNECT_ERRORS = (
    OSError,
    TimeoutError,
    ValueError,
    ssl.SSLError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


def _connect_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "timeout": settings.connect_timeout,
        "statement_cache_size": settings.statement_cache_size,
        "server_settings": {"application_name": "bgagents"},
    }


async def connect(settings: Settings, url: str | None = None) -> Connection:
    """Open one initialised connection outside the pool (LISTEN, locks, migrations)."""
    url = url or resolve_url(settings)
    try:
        conn: Connection = await asyncpg.connect(url, **_connect_kwargs(settings))
    except _CONNECT_ERRORS as exc:
        raise _connect_error(url, exc) from exc
    try:
        await _init_connection(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


async def _keep_session(conn: Connection) -> None:
    """Release a connection to the pool without asyncpg's reset query.

    By default every release sends ``RESET ALL; UNLISTEN *; CLOSE ALL;
    pg_advisory_unlock_all()``: one more round trip for every query. Our pooled
    connections never keep session state (LISTEN and session locks use their own
    connections, settings are ``SET LOCAL``), and asyncpg still rolls back an
    open transaction before this runs.
    """


async def create_pool(settings: Settings, url: str | None = None) -> Pool:
    """Create the asyncpg pool with the configured size and connection init."""
    url = url or resolve_url(settings)
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=settings.pool_min,
            max_size=settings.pool_max,
            init=_init_connection,
            reset=_keep_session,
            **_connect_kwargs(settings),
        )
    except _CONNECT_ERRORS as exc:
        raise _connect_error(url, exc) from exc
    assert pool is not None
    await sync_limits(pool, settings)
    return pool


async def sync_limits(conn: Connection | Pool, settings: Settings) -> bool:
    """Set ``bg.limits`` (what bg.enqueue, bg.publish and bg.ask enforce for every caller) from
    ``settings`` where it differs; False when it can't (no schema yet, or a role without the right)."""
    wanted = (settings.max_payload_bytes, settings.max_question_chars)
    try:
        row = await run(conn, "limits_get")
        if row is None or tuple(row) == wanted:
            return row is not None
        await run(conn, "limits_set", *wanted)
    except asyncpg.PostgresError as exc:
        logger.debug("could not bring bg.limits in step with the settings: %s", exc)
        return False
    logger.info("bg.limits: payloads up to %s bytes, questions up to %s characters", *wanted)
    return True


@asynccontextmanager
async def connection(settings: Settings, url: str | None = None) -> AsyncIterator[Connection]:
    """``async with connection(settings) as conn``: one connection, closed afterwards."""
    conn = await connect(settings, url)
    try:
        yield conn
    finally:
        await conn.close()


def sql_text(name: str) -> str:
    """The SQL of the named query ``name`` (for scripts run with ``execute``)."""
    return queries[name].sql


async def run(conn: Connection | Pool, name: str, *args: Any) -> Any:
    """Run the named query ``name`` from ``sql/queries`` with the call its kind picks."""
    query: Query = queries[name]
    if query.kind == "many":
        return await conn.fetch(query.sql, *args)
    if query.kind == "one":
        return await conn.fetchrow(query.sql, *args)
    if query.kind == "val":
        return await conn.fetchval(query.sql, *args)
    return await conn.execute(query.sql, *args)


async def call(conn: Connection | Pool, name: str, *args: Any) -> Any:
    """:func:`run`, with driver errors raised as :mod:`bus.errors` types (for the domain services)."""
    try:
        return await run(conn, name, *args)
    except (asyncpg.PostgresError, *TRANSIENT_ERRORS) as exc:
        translated = from_driver(exc)
        if translated is None:
            raise
        raise translated from exc
