"""What ``bgagents doctor`` asks the server: where it is, its version, extensions and schema state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    async with db.connection(settings, url) as conn:
        return ServerReport(
            where=db.describe(url),
            version=await server_version(conn),
            extensions={name: await extension(conn, name) for name in extensions},
            schema=await schema_state(conn),
        )
