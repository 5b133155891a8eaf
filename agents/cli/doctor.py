"""``bgagents doctor``: checks that this machine can run the system.

Each check gives ✓ (fine), ⚠ (works, but an optional feature is missing) or
✗ (broken), with the fix. Doctor exits non-zero on any ✗.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

import aiohttp
import click

from agents.cli.root import run_coroutine, settings_of
from bus import diagnostics, migrate
from bus.config import Settings
from bus.errors import BgError

OK, WARN, FAIL = "✓", "⚠", "✗"
MIN_SERVER_VERSION = 140000
MIN_PYTHON = (3, 11)


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    mark: str
    label: str
    detail: str
    fix: str = ""

    def render(self) -> str:
        line = f"{self.mark} {self.label}: {self.detail}"
        return f"{line} — fix: {self.fix}" if self.fix else line


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        return Check(FAIL, "python", f"{version} is too old", "use Python 3.11 or newer")
    return Check(OK, "python", version)


async def check_database(settings: Settings) -> list[Check]:
    where = "embedded server" if settings.uses_embedded else "DATABASE_URL"
    try:
        report = await diagnostics.examine(settings)
    except BgError as exc:
        return [Check(FAIL, "database", exc.message, exc.hint or "check DATABASE_URL")]
    version = report.version
    checks = [Check(OK, "database", f"{report.where} ({where})")]
    if version.num < MIN_SERVER_VERSION:
        checks.append(
            Check(FAIL, "server version", f"PostgreSQL {version.text}", "use PostgreSQL 14 or newer")
        )
    else:
        checks.append(Check(OK, "server version", f"PostgreSQL {version.text}"))
    checks.append(_check_pgvector(report.extensions["vector"], version.num))
    checks.append(_check_schema(report.schema))
    if not settings.uses_embedded:
        checks.extend(await check_pooler(settings))
    return checks


async def check_pooler(settings: Settings) -> list[Check]:
    """Whether a pooler in transaction mode (PgBouncer) is in front, and set up for (docs/scale-out.md)."""
    label = "pooler"
    try:
        report = await diagnostics.pooler(settings)
    except BgError as exc:
        return [
            Check(FAIL, label, f"BGAGENTS_LISTEN_URL: {exc.message}", exc.hint or "check BGAGENTS_LISTEN_URL")
        ]
    direct = "point it at PostgreSQL itself, not at PgBouncer"
    if not report.pooled:
        if report.listen_pooled:
            return [
                Check(
                    FAIL,
                    label,
                    "BGAGENTS_LISTEN_URL goes through a pooler in transaction mode: "
                    "LISTEN would miss notifications",
                    direct,
                )
            ]
        return [Check(OK, label, "none detected: DATABASE_URL reaches PostgreSQL with a session of its own")]
    checks = []
    if not report.listen_set:
        checks.append(
            Check(
                FAIL,
                label,
                "DATABASE_URL goes through a pooler in transaction mode (PgBouncer) and BGAGENTS_LISTEN_URL "
                "is unset, so LISTEN and the migration lock would go through it too",
                "set BGAGENTS_LISTEN_URL to PostgreSQL directly",
            )
        )
    elif report.listen_pooled:
        checks.append(Check(FAIL, label, "BGAGENTS_LISTEN_URL goes through the pooler too", direct))
    if report.prepared_error is not None:
        checks.append(
            Check(
                FAIL,
                "statement cache",
                f"BGAGENTS_STATEMENT_CACHE_SIZE={settings.statement_cache_size} fails through the pooler "
                f"({report.prepared_error})",
                "set BGAGENTS_STATEMENT_CACHE_SIZE=0 (or PgBouncer 1.21+ with max_prepared_statements)",
            )
        )
    if not checks:
        cache = (
            "statement cache 0"
            if settings.statement_cache_size == 0
            else f"prepared statements work through it (cache {settings.statement_cache_size})"
        )
        checks.append(
            Check(OK, label, f"transaction-mode pooler (PgBouncer) in front; LISTEN goes direct; {cache}")
        )
    return checks


def _check_pgvector(vector: diagnostics.Extension, version_num: int) -> Check:
    if vector.installed:
        return Check(OK, "pgvector", f"installed ({vector.installed_version}); AI search is available")
    if vector.available:
        return Check(OK, "pgvector", "available; `bgagents migrate` creates it")
    return Check(
        WARN,
        "pgvector",
        "not installed; AI help and search are off, the rest works",
        migrate.extension_hint("vector", version_num),
    )


def _check_schema(schema: diagnostics.SchemaState) -> Check:
    if schema.error is not None:
        return Check(FAIL, "schema", schema.error.message, schema.error.hint or "")
    pending = schema.named("pending")
    waiting = schema.named("unavailable")
    if pending:
        return Check(
            FAIL,
            "schema",
            f"{len(pending)} migration(s) pending: {', '.join(pending)}",
            "run `bgagents migrate`",
        )
    detail = f"current ({len(schema.named('applied'))} migrations applied)"
    if waiting:  # optional features: the pgvector line says what to do
        return Check(OK, "schema", f"{detail}; {', '.join(waiting)} waits for an extension")
    return Check(OK, "schema", detail)


async def check_web_port(settings: Settings) -> Check:
    label = "web port"
    where = f"{settings.host}:{settings.port}"
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(settings.host, settings.port), timeout=2)
        writer.close()
    except (OSError, TimeoutError):
        return Check(OK, label, f"{where} is free")
    try:
        timeout = aiohttp.ClientTimeout(total=3)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"http://{where}/healthz") as resp,
        ):
            body = await resp.json(content_type=None)
        if isinstance(body, dict) and body.get("service") == "bgagents":
            return Check(OK, label, f"{where} is already serving Background Agents")
    except (aiohttp.ClientError, ValueError, TimeoutError):
        pass
    return Check(
        FAIL, label, f"{where} is used by another program", "stop it, or set BGAGENTS_PORT to a free port"
    )


async def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order the report shows them."""
    return [check_python(), *await check_database(settings), await check_web_port(settings)]


def print_checks(settings: Settings) -> bool:
    """Run every check, print one line each, and say whether none failed."""
    checks = run_coroutine(run_checks(settings))
    for check in checks:
        click.echo(check.render())
    return not any(c.mark == FAIL for c in checks)


@click.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check Python, the database, optional features, the schema and the web port."""
    if not print_checks(settings_of(ctx)):
        sys.exit(1)


COMMANDS = (doctor,)
