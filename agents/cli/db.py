"""Database commands: ``migrate``, ``setup``, ``db url|start|stop|psql|backup|restore`` and ``stats``."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from agents.cli.doctor import print_checks
from agents.cli.root import fail, run_coroutine, settings_of
from bus import backup, embedded, health, migrate, roles
from bus.client import Bus
from bus.config import Settings, load_settings
from bus.server import resolve_url


@click.command("migrate")
@click.option("--status", "show_status", is_flag=True, help="Show each migration's state.")
@click.option("--sql", "show_sql", is_flag=True, help="Print the pending SQL for a DBA to run.")
@click.pass_context
def migrate_cmd(ctx: click.Context, show_status: bool, show_sql: bool) -> None:
    """Bring the database schema up to date."""
    settings = settings_of(ctx)

    async def go() -> None:
        if show_sql:
            click.echo(await migrate.pending_sql_of(settings), nl=False)
            return
        if show_status:
            for s in await migrate.status_of(settings):
                extra = f"  ({s.reason})" if s.reason else ""
                click.echo(f"{s.state:<12} {s.migration.filename}{extra}")
            return
        report = await migrate.apply(settings)
        for m in report.applied:
            click.echo(f"applied  {m.filename}")
        for m, reason in report.skipped:
            click.echo(f"skipped  {m.filename}: {reason}")
        click.echo(
            f"schema is current: {len(report.applied)} applied now, "
            f"{report.already} before, {len(report.skipped)} skipped"
        )

    run_coroutine(go())


@click.command()
@click.option("--yes", is_flag=True, help="Don't ask: keep DATABASE_URL or use the embedded server.")
@click.option("--database-url", default=None, help="Use this server instead of asking.")
@click.option("--env-file", default=".env", show_default=True, type=click.Path(dir_okay=False))
@click.pass_context
def setup(ctx: click.Context, yes: bool, database_url: str | None, env_file: str) -> None:
    """Choose a database, write .env, migrate and run doctor."""
    settings = settings_of(ctx)
    url = database_url or settings.database_url
    if url is None and not yes:
        url = (
            click.prompt(
                "PostgreSQL URL (empty: use the embedded server)", default="", show_default=False
            ).strip()
            or None
        )
    if url is not None:
        settings = load_settings({**os.environ, "DATABASE_URL": url})
    _write_env(Path(env_file), url)
    click.echo(f"wrote {env_file} ({'DATABASE_URL' if url else 'embedded server'})")

    async def go() -> None:
        report = await migrate.apply(settings)
        click.echo(f"migrated: {len(report.applied)} applied, {len(report.skipped)} skipped")

    run_coroutine(go())
    if not print_checks(settings):
        sys.exit(1)


def _write_env(path: Path, url: str | None) -> None:
    lines = path.read_text().splitlines() if path.exists() else []
    lines = [ln for ln in lines if not ln.startswith("DATABASE_URL=")]
    if url:
        lines.append(f"DATABASE_URL={url}")
    path.write_text("\n".join(lines) + "\n")


@click.group("db")
def db_group() -> None:
    """The database: its URL, psql, and the embedded server."""


@db_group.command("url")
@click.option(
    "--role",
    type=click.Choice(sorted(roles.GROUPS)),
    default=None,
    help="A URL for another app: a LOGIN role in bg_reader, bg_writer or bg_runtime (made if needed).",
)
@click.pass_context
def db_url(ctx: click.Context, role: str | None) -> None:
    """Print the connection URL, starting the embedded server if needed."""
    settings = settings_of(ctx)
    if role is None:
        click.echo(resolve_url(settings))
        return
    click.echo(run_coroutine(roles.app_url(settings, role)))


@db_group.command("start")
@click.pass_context
def db_start(ctx: click.Context) -> None:
    """Start the embedded server (it keeps running until `bgagents db stop`)."""
    settings = settings_of(ctx)
    _embedded_only(settings)
    click.echo(f"embedded server running: {embedded.ensure_running(settings.pgdata)}")


@db_group.command("stop")
@click.pass_context
def db_stop(ctx: click.Context) -> None:
    """Stop the embedded server."""
    settings = settings_of(ctx)
    _embedded_only(settings)
    if embedded.stop(settings.pgdata):
        click.echo("embedded server stopped")
    else:
        click.echo("embedded server was not running")


@db_group.command("psql", context_settings={"ignore_unknown_options": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def db_psql(ctx: click.Context, psql_args: tuple[str, ...]) -> None:
    """Open psql on the database (extra arguments go to psql)."""
    settings = settings_of(ctx)
    url = resolve_url(settings)
    psql = None
    if settings.uses_embedded:
        candidate = embedded.bin_dir() / "psql"
        psql = str(candidate) if candidate.exists() else None
    psql = psql or shutil.which("psql")
    if psql is None:
        fail("psql was not found; install the PostgreSQL client (apt-get install postgresql-client)")
    os.execv(psql, [psql, url, *psql_args])


@db_group.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def db_backup(ctx: click.Context, path: Path) -> None:
    """Write schema bg (every table's rows, functions, grants) to PATH with pg_dump (custom format)."""
    settings = settings_of(ctx)
    tool = run_coroutine(backup.backup(settings, path))
    click.echo(f"backed up schema bg to {path} ({path.stat().st_size / 2**20:.1f} MiB, pg_dump {tool.major})")


@db_group.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", "--clean", "force", is_flag=True, help="Drop the database's bg schema first.")
@click.pass_context
def db_restore(ctx: click.Context, path: Path, force: bool) -> None:
    """Restore a `bgagents db backup` into a database without a bg schema, then migrate it."""
    settings = settings_of(ctx)
    done = run_coroutine(backup.restore(settings, path, force=force))
    if done.dropped:
        click.echo("dropped the existing bg schema")
    if done.events_rebased:
        click.echo(
            f"note: {done.events_rebased} events came from a cluster ahead of this one; "
            "they keep their ids, and event cursors from before the restore no longer apply"
        )
    click.echo(
        f"restored schema bg from {path} (pg_restore {done.tool.major}); "
        f"{done.migrations_applied} newer migration(s) applied"
    )


def _embedded_only(settings: Settings) -> None:
    if not settings.uses_embedded:
        fail("DATABASE_URL is set, so there is no embedded server to manage; unset DATABASE_URL to use it")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Database statistics: version, size, connections, largest tables, TPS."""
    settings = settings_of(ctx)

    async def go() -> dict[str, Any]:
        async with Bus.connect(settings, listen=False) as bus:
            return await health.statistics(bus.pool)

    figures = run_coroutine(go())
    if as_json:
        click.echo(json.dumps(figures))
        return
    click.echo(f"server           PostgreSQL {figures['server_version']}")
    click.echo(f"database size    {figures['database_size_bytes'] / 2**20:.1f} MiB")
    click.echo(f"connections      {figures['connections']} of {figures['max_connections']}")
    click.echo(f"transactions/s   {figures['transactions_per_second']}")
    click.echo("largest tables:")
    for t in figures["largest_tables"]:
        click.echo(f"  {t['table']:<32} {t['total_bytes'] / 1024:>10.0f} KiB {t['estimated_rows']:>10} rows")


COMMANDS = (migrate_cmd, setup, db_group, stats)
