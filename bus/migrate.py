"""Forward-only, ordered migrations from ``sql/migrations/NNNN_name.sql``.

Migrations run under a session advisory lock, one transaction each, and are
recorded with a checksum in ``bg.schema_migrations``. A migration that was
edited after it was applied is refused. Two processes migrating at once both
succeed: the second waits for the lock, then finds nothing left to do. The wait
is bounded (``lock_timeout``): a session that holds the lock longer, or a table
lock a migration needs, gives a :class:`MigrationError` naming who holds it.
After each migration, no function of schema ``bg`` stays executable by PUBLIC.

A migration may declare an extension it needs on a header line::

    -- requires-extension: vector

If the extension can't be created (not installed, or not allowed), that
migration is skipped with a notice and applied by a later run once the
extension exists. Such a migration must only add the optional feature's own
objects, so that later migrations never depend on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
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

LOCK_TIMEOUT = 60.0
"""Seconds ``migrate`` waits for the migration lock before it names the session holding it."""

TABLE_LOCK_TIMEOUT = "30s"
"""How long one migration's statements wait for a table lock (PostgreSQL's ``lock_timeout``)."""

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


async def _take_lock(conn: db.Connection, timeout: float) -> None:
    """Take the migration lock, or raise :class:`MigrationError` naming its holder after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while not await db.run(conn, "migrate_try_lock"):
        if time.monotonic() >= deadline:
            holders = await db.run(conn, "migrate_lock_holders") or "a session that has since ended"
            raise MigrationError(
                f"the migration lock (advisory lock 1650934119, 1) was not free within {timeout:g} s; "
                f"held by {holders}",
                hint="another `bgagents migrate` may still run; if that session is not a migration, "
                "end it with pg_terminate_backend(pid)",
            )
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.2)


async def _apply_one(conn: db.Connection, migration: Migration, table_lock_timeout: str) -> None:
    try:
        async with conn.transaction():
            await db.run(conn, "migrate_lock_timeout", table_lock_timeout)
            await conn.execute(migration.sql)
            await db.run(conn, "migrate_revoke_public")
            await db.run(conn, "migrate_record", migration.version, migration.name, migration.checksum)
    except asyncpg.LockNotAvailableError as exc:
        holders = await db.run(conn, "migrate_table_lock_holders") or "sessions that have since ended"
        raise MigrationError(
            f"migration {migration.filename} waited more than {table_lock_timeout} for a table lock: "
            f"{exc}; sessions holding locks in schema bg: {holders}",
            hint="stop the agents (or end those transactions), then run `bgagents migrate` again",
        ) from exc
    except asyncpg.PostgresError as exc:
        raise MigrationError(
            f"migration {migration.filename} failed: {exc}",
            hint=getattr(exc, "hint", None),
        ) from exc


async def migrate(
    conn: db.Connection,
    migrations: list[Migration] | None = None,
    *,
    lock_timeout: float = LOCK_TIMEOUT,
    table_lock_timeout: str = TABLE_LOCK_TIMEOUT,
) -> MigrationReport:
    """Apply every pending migration whose extensions can be had.

    Waits at most ``lock_timeout`` seconds for the migration lock, and each statement at
    most ``table_lock_timeout`` (a PostgreSQL interval, e.g. ``"30s"``) for a table lock."""
    migrations = load_migrations() if migrations is None else migrations
    report = MigrationReport()
    await _take_lock(conn, lock_timeout)
    try:
        if not await db.run(conn, "migrate_ledger_exists"):
            # Only then: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when
            # the schema exists, which a runtime role (bg_runtime) rightly lacks.
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
            await _apply_one(conn, migration, table_lock_timeout)
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
        parts.append(db.sql_text("migrate_revoke_public").strip())
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
    """:func:`migrate` on a direct connection of its own (the migration lock is a session
    lock, which a pooler in transaction mode would not keep), then the limits the bg
    functions enforce set from ``settings``."""
    async with db.connection(settings, db.listen_url(settings)) as conn:
        report = await migrate(conn)
        await db.sync_limits(conn, settings)
        return report


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
