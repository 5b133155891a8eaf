"""What ``bgagents doctor`` asks the server: where it is, its version, extensions, schema state,
and whether a pooler (PgBouncer in transaction mode) sits in between and is configured for."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from bus import db, migrate
from bus.config import Settings
from bus.errors import BgError

OPTIONAL_EXTENSIONS = ("vector",)
"""Extensions that optional features need (pgvector: AI help and search)."""


@dataclass(frozen=True)
class ServerVersion:
    """The server's version as PostgreSQL prints it and as a number (e.g. 150008)."""

    text: str
    num: int


@dataclass(frozen=True)
class Extension:
    """One extension: the version created in this database and the one the server offers."""

    name: str
    installed_version: str | None
    default_version: str | None

    @property
    def installed(self) -> bool:
        """Created in this database."""
        return self.installed_version is not None

    @property
    def available(self) -> bool:
        """On the server, so that ``CREATE EXTENSION`` (and ``bgagents migrate``) can create it."""
        return self.installed or self.default_version is not None


@dataclass(frozen=True)
class SchemaState:
    """Each migration's state here, or why it could not be read (e.g. an edited migration)."""

    migrations: tuple[migrate.MigrationState, ...] = ()
    error: BgError | None = None

    def named(self, state: str) -> list[str]:
        """The file names of the migrations in ``state`` (applied, pending, unavailable)."""
        return [s.migration.filename for s in self.migrations if s.state == state]


@dataclass(frozen=True)
class ServerReport:
    """Everything doctor reports about the configured database."""

    where: str
    version: ServerVersion
    extensions: dict[str, Extension]
    schema: SchemaState


async def server_version(conn: db.Pool | db.Connection) -> ServerVersion:
    """The server's version, as text and as a number."""
    row = await db.call(conn, "diagnostics_server_version")
    return ServerVersion(row["version"], row["version_num"])


async def extension(conn: db.Pool | db.Connection, name: str) -> Extension:
    """Whether extension ``name`` is created here (and its version), and whether the server has it."""
    row = await db.call(conn, "diagnostics_extension", name)
    return Extension(name, row["installed_version"], row["default_version"])


async def schema_state(conn: db.Connection) -> SchemaState:
    """Each migration's state in this database, without changing anything."""
    try:
        return SchemaState(tuple(await migrate.status(conn)))
    except BgError as exc:
        return SchemaState(error=exc)


async def examine(settings: Settings, extensions: Sequence[str] = OPTIONAL_EXTENSIONS) -> ServerReport:
    """Connect to the configured database and report on it; raises :class:`BgError` if unreachable."""
    url = db.resolve_url(settings)
    # Without a statement cache, so that even a misconfigured pooler lets these questions through.
    async with db.connection(_uncached(settings), url) as conn:
        return ServerReport(
            where=db.describe(url),
            version=await server_version(conn),
            extensions={name: await extension(conn, name) for name in extensions},
            schema=await schema_state(conn),
        )


@dataclass(frozen=True)
class PoolerReport:
    """Whether ``DATABASE_URL`` and ``BGAGENTS_LISTEN_URL`` share server sessions between client
    connections (a pooler in transaction mode), and whether prepared statements survive that."""

    pooled: bool
    listen_set: bool
    listen_pooled: bool
    prepared_error: str | None = None
    """Why the configured statement cache fails through the pooler (None: it works, or is 0)."""


def _uncached(settings: Settings) -> Settings:
    return dataclasses.replace(settings, statement_cache_size=0)


async def shares_sessions(settings: Settings, url: str, rounds: int = 4) -> bool:
    """Whether two connections open at once to ``url`` are served by the same server process.

    A direct connection, or a pooler in session mode, gives each client its own server
    session; PgBouncer in transaction mode hands an idle server session to whichever client
    asks next (most recently used first), so alternating statements meet the same one."""
    probe = _uncached(settings)
    async with db.connection(probe, url) as first, db.connection(probe, url) as second:
        for _ in range(rounds):
            if await db.call(first, "diagnostics_backend_pid") == await db.call(
                second, "diagnostics_backend_pid"
            ):
                return True
    return False


async def prepared_statement_error(settings: Settings, url: str, rounds: int = 3) -> str | None:
    """Why named prepared statements (``BGAGENTS_STATEMENT_CACHE_SIZE`` > 0) fail on ``url``,
    or None when they work there (PgBouncer 1.21+ with ``max_prepared_statements``).

    One connection holds a server session in an open transaction while the other prepares
    its statement, so the pooler serves that on another session; once the first lets go,
    the next run of the cached statement usually meets a session that never saw it."""
    try:
        async with db.connection(settings, url) as holder, db.connection(settings, url) as other:
            for n in range(rounds):
                async with holder.transaction():
                    await db.run(holder, "diagnostics_backend_pid")
                    await db.run(other, "diagnostics_prepared_probe", n)
                await db.run(other, "diagnostics_prepared_probe", n)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    except BgError as exc:
        return exc.message
    return None


async def pooler(settings: Settings) -> PoolerReport:
    """Look for a pooler in front of the configured database, and check what it needs."""
    url = db.resolve_url(settings)
    pooled = await shares_sessions(settings, url)
    listen_set = settings.listen_url is not None
    listen_pooled = pooled if not listen_set else await shares_sessions(settings, db.listen_url(settings))
    error = None
    if pooled and settings.statement_cache_size > 0:
        error = await prepared_statement_error(settings, url)
    return PoolerReport(pooled, listen_set, listen_pooled, error)
