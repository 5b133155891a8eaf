"""Agent commands: ``run``, ``up``, ``status`` and ``agent NAME COMMAND``.

They are registered on the root group by :mod:`agents.cli`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from agents.base import load_config
from agents.registry import resolve
from agents.supervisor import Supervisor
from bus import db, migrate
from bus.client import Bus
from bus.config import Settings
from bus.errors import SchemaNotReady


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


async def run_agents(settings: Settings, specs: list[str], announce: str | None = None) -> None:
    """Run agents in one supervised process until SIGINT or SIGTERM."""
    classes = [resolve(spec) for spec in specs]
    configs = [load_config(cls, settings.monitoring_file) for cls in classes]
    async with Bus.connect(settings) as bus:
        async with db.connection(settings) as conn:
            if not await migrate.is_current(conn):
                raise SchemaNotReady("the database schema is not current")
        supervisor = Supervisor(bus, [cls(bus, cfg) for cls, cfg in zip(classes, configs, strict=True)])
        supervisor.install_signal_handlers()
        if announce:
            click.echo(announce, err=True)
        await supervisor.run()


def register(cli: click.Group) -> None:
    """Add this module's commands to the root group."""
    for command in (run, status, agent):
        cli.add_command(command)


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def run(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Run agents in this process: built-in names or package.module:AgentClass."""
    asyncio.run(run_agents(_settings(ctx), list(names), f"running {', '.join(names)}; Ctrl-C stops them"))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Agents (status, health, last beat, pid, host), firing alerts and a health summary."""

    async def go() -> dict[str, Any]:
        async with Bus.connect(_settings(ctx), listen=False) as bus:
            return await bus.state.get_system_health()

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
        note = f"  ({a['note']})" if a["note"] else ""
        click.echo(
            f"{a['name']:<18} {a['status']:<9} {a['health']:<7} {age:>9} {a['pid']:>7}  {a['host']}{note}"
        )
    if report["alerts"]:
        click.echo()
        click.echo("firing alerts:")
        for alert in report["alerts"]:
            acked = f" (acked by {alert['acked_by']})" if alert["acked_by"] else ""
            click.echo(f"  [{alert['severity']}] #{alert['id']} {alert['summary']}{acked}")
    if not report["healthy"]:
        sys.exit(2)


@click.command()
@click.argument("name")
@click.argument("command", type=click.Choice(["pause", "resume", "stop", "restart"]))
@click.pass_context
def agent(ctx: click.Context, name: str, command: str) -> None:
    """Send COMMAND to every running instance of agent NAME."""

    async def go() -> int:
        async with Bus.connect(_settings(ctx), listen=False) as bus:
            count: int = await db.run(bus.pool, "agent_command", name, command)
            return count

    count = asyncio.run(go())
    click.echo(f"{command} sent to {count} instance(s) of {name}")
