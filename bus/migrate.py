"""Forward-only, ordered migrations from ``sql/migrations/NNNN_name.sql``.

Migrations run under a session advisory lock, one transaction each, and are
recorded with a checksum in ``bg.schema_migrations``. A migration that was
edited after it was applied is refused. Two processes migrating at once both
succeed: the second waits for the lock, then finds nothing left to do.

A migration may declare an extension it needs on a header line::

    -- requires-extension: vector

If the extension can't be created (not installed, or not allowed), that
migration is skipped with a notice and applied by a later run once the
extension exists. Such a migration must only add the optional feature's own
objects, so that later migrations never depend on it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import asyncpg

from bus import db
from bus.config import Settings
from bus.errors import MigrationError, SchemaNotReady
from sql import MIGRATIONS_DIR

logger = logging.getLogger(__name__)

_FILENAME = re.compile(r"^(?P<version>\d{4})_(?P<name>\w+)\.sql$")
_REQUIRES = re.compile(r"^--\s*requires-extension:\s*(?P<ext>\w+)\s*$", re.M)

_PARAMETER = re.compile(r"\$(\d+)\b")

EXTENSION_HINTS = MappingProxyType(
    {
        "vector": "install pgvector on the server (Debian: apt-get install "
        "postgresql-<major version>-pgvector), then run `bgagents migrate` again",
    }
)


def extension_hint(ext: str, server_version_num: int | None = None) -> str:
    """How to get ``ext``, naming the server's major version where known."""
    hint = EXTENSION_HINTS.get(ext, f"install the {ext} extension on the server")
    if server_version_num:
        hint = hint.replace("<major version>", str(server_version_num // 10000))
    return hint


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str
    requires: tuple[str, ...]

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.replace("\r\n", "\n").encode()).hexdigest()


@dataclass(frozen=True)
class MigrationState:
    """Where one migration stands in a database."""

    migration: Migration
    state: str  # applied, pending, unavailable
    reason: str = ""


@dataclass
class MigrationReport:
    """What one ``migrate()`` call did."""

    applied: list[Migration] = field(default_factory=list)
    skipped: list[tuple[Migration, str]] = field(default_factory=list)
    already: int = 0


def load_migrations(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read and order the migration files, refusing gaps and duplicates."""
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILENAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        text = path.read_text("utf-8")
        found.append(
            Migration(
                int(match["version"]),
                match["name"],
                text,
                tuple(m["ext"] for m in _REQUIRES.finditer(text)),
            )
        )
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migrations in {folder} must be numbered 0001, 0002, ... without gaps")
    return found


async def _extension_problem(conn: db.Connection, ext: str) -> str | None:
    """Create ``ext`` if needed; return why it can't be had, or None."""
    if await db.run(conn, "extension_installed", ext):
        return None
    hint = EXTENSION_HINTS.get(ext, f"install the {ext} extension on the server")
    if not await db.run(conn, "extension_available", ext):
        return f"the {ext} extension is not installed on this server; {hint}"
    try:
        async with conn.transaction():
            # ext comes from our own migration header (matched by \w+), never from input.
            await conn.execute(await db.run(conn, "extension_create_statement", ext))
    except asyncpg.InsufficientPrivilegeError:
        return (
            f"this user may not create the {ext} extension; ask a superuser to run "
            f'CREATE EXTENSION "{ext}" in this database, then run `bgagents migrate` again'
        )
    except asyncpg.UniqueViolationError:
        pass  # another database or session created it at the same moment
    return None


def _check_unchanged(migration: Migration, recorded: str) -> None:
    if recorded != migration.checksum:
        raise MigrationError(
            f"migration {migration.filename} was edited after it was applied (checksum differs)",
            hint="migrations are forward-only: restore the file and put the change in a new one",
        )


async def migrate(conn: db.Connection, migrations: list[Migration] | None = None) -> MigrationReport:
    """Apply every pending migration whose extensions can be had."""
    migrations = load_migrations() if migrations is None else migrations
    report = MigrationReport()
    await db.run(conn, "migrate_lock")
    try:
        await conn.execute(db.sql_text("migrate_bootstrap"))
        applied = {r["version"]: r["checksum"] for r in await db.run(conn, "migrate_applied")}
        for migration in migrations:
            if migration.version in applied:
                _check_unchanged(migration, applied[migration.version])
                report.already += 1
                continue
            problems = [p for ext in migration.requires if (p := await _extension_problem(conn, ext))]
            if problems:
                logger.warning("skipping migration %s: %s", migration.filename, "; ".join(problems))
                report.skipped.append((migration, "; ".join(problems)))
                continue
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await db.run(
                        conn, "migrate_record", migration.version, migration.name, migration.checksum
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(
                    f"migration {migration.filename} failed: {exc}",
                    hint=getattr(exc, "hint", None),
                ) from exc
            logger.info("applied migration %s", migration.filename)
            report.applied.append(migration)
    finally:
        await db.run(conn, "migrate_unlock")
    return report


async def status(conn: db.Connection, migrations: list[Migration] | None = None) -> list[MigrationState]:
    """Each migration's state in this database, without changing anything."""
    migrations = load_migrations() if migrations is None else migrations
    applied: dict[int, str] = {}
    if await db.run(conn, "migrate_ledger_exists"):
        applied = {r["version"]: r["checksum"] for r in await db.run(conn, "migrate_applied")}
    states = []
    for migration in migrations:
        if migration.version in applied:
            _check_unchanged(migration, applied[migration.version])
            states.append(MigrationState(migration, "applied"))
            continue
        missing = [
            ext
            for ext in migration.requires
            if not await db.run(conn, "extension_installed", ext)
            and not await db.run(conn, "extension_available", ext)
        ]
        if missing:
            reason = "; ".join(EXTENSION_HINTS.get(ext, f"install the {ext} extension") for ext in missing)
            states.append(MigrationState(migration, "unavailable", f"needs {', '.join(missing)}: {reason}"))
        else:
            states.append(MigrationState(migration, "pending"))
    return states


async def pending_sql(conn: db.Connection, migrations: list[Migration] | None = None) -> str:
    """The SQL a DBA can run by hand to bring this database up to date."""
    states = await status(conn, migrations)
    parts = [db.sql_text("migrate_bootstrap")]
    for state in states:
        if state.state == "applied":
            continue
        m = state.migration
        if state.state == "unavailable":
            parts.append(f"-- skipped {m.filename}: {state.reason}")
            continue
        parts.append(f"-- {m.filename}")
        for ext in m.requires:
            parts.append(await db.run(conn, "extension_create_statement", ext) + ";")
        parts.append("BEGIN;")
        parts.append(m.sql.strip())
        parts.append(with_literals(db.sql_text("migrate_record"), m.version, m.name, m.checksum))
        parts.append("COMMIT;")
    return "\n\n".join(parts) + "\n"


def _literal(value: int | str) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def with_literals(sql: str, *values: int | str) -> str:
    """``sql`` with ``$1..$n`` replaced by ``values`` as SQL literals, for a script run by hand."""
    return _PARAMETER.sub(lambda m: _literal(values[int(m[1]) - 1]), sql)


async def is_current(conn: db.Connection) -> bool:
    """Whether every migration that can be applied here has been."""
    return all(s.state != "pending" for s in await status(conn))


async def apply(settings: Settings) -> MigrationReport:
    """:func:`migrate` on a connection of its own to the configured database."""
    async with db.connection(settings) as conn:
        return await migrate(conn)


async def status_of(settings: Settings) -> list[MigrationState]:
    """:func:`status` on a connection of its own to the configured database."""
    async with db.connection(settings) as conn:
        return await status(conn)


async def pending_sql_of(settings: Settings) -> str:
    """:func:`pending_sql` on a connection of its own to the configured database."""
    async with db.connection(settings) as conn:
        return await pending_sql(conn)


async def require_current(settings: Settings) -> None:
    """Raise :class:`SchemaNotReady` unless the configured database's schema is current."""
    async with db.connection(settings) as conn:
        if not await is_current(conn):
            raise SchemaNotReady("the database schema is not current")
