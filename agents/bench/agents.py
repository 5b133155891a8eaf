"""``bgagents bench agents`` and ``bench monitor``: the agents' own costs, measured.

``bench agents`` registers N simulated agents that heartbeat every second,
runs the real HeartbeatHealthAgent beside them for S seconds, and reports
false missed-beat alarms (health that left ``up``, alerts raised) and the
database server's CPU share. ``bench monitor`` runs the PerformanceMonitor at a
1 s interval and reports its own CPU use as a share of one core.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import time
from dataclasses import replace
from typing import Any

import click
import psutil

from agents.bench.common import bench, bench_database
from agents.builtin.heartbeat import HeartbeatHealthAgent
from agents.builtin.performance import PerformanceMonitor
from agents.cli.root import settings_of
from agents.runtime.supervisor import Supervisor
from bus import agents as instances
from bus import scratch
from bus.client import Bus
from bus.config import Settings


def _server_processes() -> list[psutil.Process]:
    """The local PostgreSQL server's processes (empty for a remote server)."""
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            found.append(proc)
    return found


class ServerCpu:
    """CPU seconds used by the local PostgreSQL processes, including ones that exit."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}
        self.start = self._sample()

    def _sample(self) -> float:
        for proc in _server_processes():
            try:
                times = proc.cpu_times()
                self.seen[proc.pid] = times.user + times.system
            except psutil.Error:
                pass
        return sum(self.seen.values())

    def used(self) -> float:
        return self._sample() - self.start


async def run_agents_bench(settings: Settings, url: str, *, agents: int, seconds: float) -> dict[str, Any]:
    bench_settings = replace(settings, database_url=url, pool_min=2, pool_max=20)
    host = f"bench-{socket.gethostname()}"
    async with Bus.connect(bench_settings) as bus:
        await scratch.forget_host_agents(bus.pool, host)
        await scratch.clear_alerts(bus.pool)
        ids = [f"sim-{i}@{host}" for i in range(agents)]
        for i, instance in enumerate(ids):
            await instances.register(
                bus.pool, instance, f"sim-{i}", "simulated", host, os.getpid(), "bench", 1.0
            )
            await instances.set_status(bus.pool, instance, "running", None)
        stop = asyncio.Event()
        beats = 0

        async def beat(instance: str) -> None:
            nonlocal beats
            await asyncio.sleep(random.random())  # spread the beats over the second
            seq = 0
            while not stop.is_set():
                seq += 1
                await instances.beat(bus.pool, instance, seq, 0.0, 0)
                beats += 1
                await asyncio.sleep(1.0)

        watcher = HeartbeatHealthAgent(bus, HeartbeatHealthAgent.Config(interval=1.0))
        supervisor = Supervisor(bus, [watcher])
        left_up: set[str] = set()

        async def watch_health() -> None:
            async for event in bus.subscribe(["agents"]):
                if event.payload.get("host") == host and event.payload.get("health") != "up":
                    left_up.add(event.payload["instance_id"])

        cpu = ServerCpu()
        began = time.monotonic()
        tasks = [asyncio.create_task(beat(i)) for i in ids]
        running = asyncio.create_task(supervisor.run())
        health = asyncio.create_task(watch_health())
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - began
        server_cpu = cpu.used()
        stop.set()
        supervisor.stop()
        await asyncio.gather(*tasks, running)
        health.cancel()
        alerts = await scratch.agent_down_alerts(bus.pool, host)
        await scratch.forget_host_agents(bus.pool, host)
    return {
        "agents": agents,
        "seconds": round(elapsed, 1),
        "beats_per_s": round(beats / elapsed, 1),
        "false_alarms": len(left_up) + alerts,
        "left_up": len(left_up),
        "alerts": alerts,
        "db_cpu_percent_of_one_core": round(100 * server_cpu / elapsed, 2) if cpu.seen else None,
        "db_cpu_percent_of_machine": round(100 * server_cpu / elapsed / (psutil.cpu_count() or 1), 2)
        if cpu.seen
        else None,
    }


async def run_monitor_bench(settings: Settings, url: str, *, seconds: float) -> dict[str, Any]:
    bench_settings = replace(settings, database_url=url, pool_min=1, pool_max=4)
    async with Bus.connect(bench_settings, listen=False) as bus:
        monitor = PerformanceMonitor(bus, PerformanceMonitor.Config(interval=1.0))
        await monitor.setup()
        own = psutil.Process()
        before = own.cpu_times()
        began = time.monotonic()
        samples = 0
        while time.monotonic() - began < seconds:
            tick = time.monotonic()
            await monitor.run_once()
            samples += 1
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        elapsed = time.monotonic() - began
        after = own.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return {
        "seconds": round(elapsed, 1),
        "samples": samples,
        "interval_s": 1.0,
        "cpu_percent_of_one_core": round(100 * used / elapsed, 3),
    }


def _print(rows: list[tuple[str, Any]], summary: dict[str, Any], as_json: bool) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
    if as_json:
        click.echo(json.dumps(summary))


@bench.command("agents")
@click.option("--agents", "count", default=200, show_default=True, type=click.IntRange(1, 10000))
@click.option("--seconds", default=60.0, show_default=True, type=click.FloatRange(5))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on the last line.")
@click.pass_context
def bench_agents(ctx: click.Context, count: int, seconds: float, as_json: bool) -> None:
    """N simulated agents heartbeating every second: false alarms and database CPU."""
    settings = settings_of(ctx)

    async def go() -> dict[str, Any]:
        return await run_agents_bench(settings, await bench_database(settings), agents=count, seconds=seconds)

    r = asyncio.run(go())
    cpu = r["db_cpu_percent_of_one_core"]
    _print(
        [
            ("simulated agents", r["agents"]),
            ("seconds", r["seconds"]),
            ("heartbeats/s", r["beats_per_s"]),
            ("false alarms", f"{r['false_alarms']} ({r['left_up']} left up, {r['alerts']} alerts)"),
            (
                "database CPU",
                "n/a (remote server)"
                if cpu is None
                else f"{cpu:.1f}% of one core ({r['db_cpu_percent_of_machine']:.1f}% of the machine)",
            ),
        ],
        r,
        as_json,
    )


@bench.command("monitor")
@click.option("--seconds", default=30.0, show_default=True, type=click.FloatRange(5))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on the last line.")
@click.pass_context
def bench_monitor(ctx: click.Context, seconds: float, as_json: bool) -> None:
    """The PerformanceMonitor's own CPU use at a 1 s interval (target: 1% of one core)."""
    settings = settings_of(ctx)

    async def go() -> dict[str, Any]:
        return await run_monitor_bench(settings, await bench_database(settings), seconds=seconds)

    r = asyncio.run(go())
    _print(
        [
            ("samples", r["samples"]),
            ("interval", "1 s"),
            ("monitor CPU", f"{r['cpu_percent_of_one_core']:.2f}% of one core"),
        ],
        r,
        as_json,
    )
