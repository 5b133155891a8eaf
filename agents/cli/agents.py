"""Agent commands: ``run``, ``up``, ``status`` and ``agent NAME COMMAND``."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from agents.cli.root import clean, run_coroutine, settings_of
from agents.cli.webserver import start_web
from agents.runtime.agent import load_config
from agents.runtime.registry import builtin_agents, resolve
from agents.runtime.supervisor import Supervisor
from bus import agents as instances
from bus import health, migrate
from bus.client import Bus
from bus.config import Settings
from bus.server import describe, resolve_url


async def run_agents(settings: Settings, specs: list[str], announce: str | None = None) -> None:
    """Run agents in one supervised process until SIGINT or SIGTERM."""
    classes = [resolve(spec) for spec in specs]
    configs = [load_config(cls, settings.monitoring_file) for cls in classes]
    async with Bus.connect(settings) as bus:
        await migrate.require_current(settings)
        supervisor = Supervisor(bus, [cls(bus, cfg) for cls, cfg in zip(classes, configs, strict=True)])
        supervisor.install_signal_handlers()
        if announce:
            click.echo(announce, err=True)
        await supervisor.run()


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def run(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Run agents in this process: built-in names or package.module:AgentClass."""
    asyncio.run(run_agents(settings_of(ctx), list(names), f"running {', '.join(names)}; Ctrl-C stops them"))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Agents (status, health, last beat, pid, host), firing alerts and a health summary."""

    async def go() -> dict[str, Any]:
        async with Bus.connect(settings_of(ctx), listen=False) as bus:
            return await health.system_summary(bus.pool)

    report = asyncio.run(go())
    if as_json:
        click.echo(json.dumps(report, default=str))
        return
    s = report["summary"]
    verdict = "healthy" if report["healthy"] else "UNHEALTHY"
    click.echo(
        f"{verdict}: {s['up']} up, {s['late']} late, {s['down']} down, "
        f"{s['paused']} paused, {s['firing']} alert(s) firing"
    )
    click.echo()
    click.echo(f"{'agent':<18} {'status':<9} {'health':<7} {'last beat':>9} {'pid':>7}  host / note")
    for a in report["agents"]:
        age = "-" if a["beat_age_s"] is None else f"{a['beat_age_s']:.0f}s ago"
        note = f"  ({clean(a['note'], one_line=True)})" if a["note"] else ""
        click.echo(
            f"{clean(a['name']):<18} {clean(a['status']):<9} {clean(a['health']):<7} {age:>9} "
            f"{a['pid']:>7}  {clean(a['host'])}{note}"
        )
    if report["alerts"]:
        click.echo()
        click.echo("firing alerts:")
        for alert in report["alerts"]:
            acked = f" (acked by {clean(alert['acked_by'], one_line=True)})" if alert["acked_by"] else ""
            summary = clean(alert["summary"], one_line=True)
            click.echo(f"  [{clean(alert['severity'])}] #{alert['id']} {summary}{acked}")
    if not report["healthy"]:
        sys.exit(2)


@click.command()
@click.argument("name")
@click.argument("command", type=click.Choice(["pause", "resume", "stop", "restart"]))
@click.pass_context
def agent(ctx: click.Context, name: str, command: str) -> None:
    """Send COMMAND to every running instance of agent NAME."""

    async def go() -> int:
        async with Bus.connect(settings_of(ctx), listen=False) as bus:
            return await instances.command(bus.pool, name, command)

    count = asyncio.run(go())
    click.echo(f"{command} sent to {count} instance(s) of {name}")


@click.command()
@click.option("--with", "extra", multiple=True, help="Also run package.module:AgentClass.")
@click.option("--no-web", is_flag=True, help="Run the agents only.")
@click.pass_context
def up(ctx: click.Context, extra: tuple[str, ...], no_web: bool) -> None:
    """Start everything: the database (embedded if needed), migrations, every agent and the web."""
    settings = settings_of(ctx)

    async def go() -> None:
        report = await migrate.apply(settings)
        for m, reason in report.skipped:
            click.echo(f"note: skipped {m.filename}: {reason}", err=True)
        where = "embedded PostgreSQL" if settings.uses_embedded else describe(resolve_url(settings))
        names = [*builtin_agents(), *extra]
        runner = None if no_web else await start_web(settings)
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

    run_coroutine(go())


COMMANDS = (run, up, status, agent)
