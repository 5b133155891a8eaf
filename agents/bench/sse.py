"""``bgagents bench sse``: N clients on one web process at M events/s.

It starts ``bgagents web`` as its own process on a free port, connects N SSE
clients, plus one client that connects and then never reads (stalled), and
publishes M events/s for S seconds. It reports deliveries/s, the p50/p99
latency from publish to client, the web process's CPU, and whether every
reading client got every event despite the stalled one.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import aiohttp
import click
import psutil

from agents.bench.common import bench, bench_database, percentile
from agents.cli.root import settings_of
from bus.client import Bus
from bus.config import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while True:
            if proc.poll() is not None:
                raise click.ClickException("the web process exited; run `bgagents web` to see why")
            try:
                async with session.get(f"{base}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise click.ClickException("the web process did not answer /healthz in 30 s")
            await asyncio.sleep(0.2)


async def run_sse_bench(
    settings: Settings, url: str, *, clients: int, rate: float, seconds: float
) -> dict[str, Any]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "BGAGENTS_PORT": str(port),
        "BGAGENTS_HOST": "127.0.0.1",
        "BGAGENTS_LOG_LEVEL": "WARNING",
    }
    env.pop("BGAGENTS_TOKEN", None)
    proc = subprocess.Popen(  # noqa: ASYNC220 (a long-lived child, not a blocking call)
        [sys.executable, "-m", "agents.cli.main", "web"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latencies: list[float] = []
    received = [0] * clients
    total = int(rate * seconds)
    try:
        await _wait_healthy(base, proc)
        web_proc = psutil.Process(proc.pid)
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            ready = asyncio.Semaphore(0)

            async def reader(index: int) -> None:
                async with session.get(f"{base}/api/events?channels=bench") as resp:
                    ready.release()
                    async for line in resp.content:
                        if line.startswith(b'data: {"id"'):
                            event = json.loads(line[6:])
                            latencies.append((time.time() - event["payload"]["t"]) * 1000)
                            received[index] += 1
                            if received[index] >= total:
                                return

            _stalled, stalled_writer = await asyncio.open_connection("127.0.0.1", port)
            stalled_writer.write(b"GET /api/events?channels=bench HTTP/1.1\r\nHost: x\r\n\r\n")
            await stalled_writer.drain()  # connects, then never reads a byte

            readers = [asyncio.create_task(reader(i)) for i in range(clients)]
            for _ in range(clients):
                await asyncio.wait_for(ready.acquire(), 60)
            await asyncio.sleep(0.5)
            cpu_before = web_proc.cpu_times()
            bench_settings = replace(settings, database_url=url, pool_min=1, pool_max=4)
            began = time.monotonic()
            async with Bus.connect(bench_settings, listen=False) as bus:
                due = time.monotonic()
                for _ in range(total):
                    pause = due - time.monotonic()
                    if pause > 0:
                        await asyncio.sleep(pause)
                    await bus.publish("bench", {"t": time.time(), "pad": "x" * 64})
                    due += 1 / rate
            _, pending = await asyncio.wait(readers, timeout=30)
            elapsed = time.monotonic() - began
            cpu_after = web_proc.cpu_times()
            for task in pending:
                task.cancel()
            stalled_writer.close()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    delivered = sum(received)
    return {
        "clients": clients,
        "rate": rate,
        "seconds": seconds,
        "events": total,
        "deliveries": delivered,
        "deliveries_per_s": round(delivered / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "web_cpu_percent_of_one_core": round(100 * cpu / elapsed, 1),
        "complete_clients": sum(1 for r in received if r >= total),
    }


@bench.command("sse")
@click.option("--clients", default=500, show_default=True, type=click.IntRange(1, 5000))
@click.option(
    "--rate", default=10.0, show_default=True, type=click.FloatRange(0.1), help="Events per second published."
)
@click.option("--seconds", default=20.0, show_default=True, type=click.FloatRange(2))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on the last line.")
@click.pass_context
def bench_sse(ctx: click.Context, clients: int, rate: float, seconds: float, as_json: bool) -> None:
    """SSE fan-out: deliveries/s, publish-to-client latency, web CPU, with one stalled client."""
    settings = settings_of(ctx)

    async def go() -> dict[str, Any]:
        return await run_sse_bench(
            settings, await bench_database(settings), clients=clients, rate=rate, seconds=seconds
        )

    r = asyncio.run(go())
    rows = [
        ("clients (+1 stalled)", r["clients"]),
        ("events published", r["events"]),
        ("deliveries/s", f"{r['deliveries_per_s']:,.0f}"),
        ("p50 / p99 ms", f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}"),
        ("web CPU", f"{r['web_cpu_percent_of_one_core']:.0f}% of one core"),
        ("clients with every event", f"{r['complete_clients']} of {r['clients']}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
    if as_json:
        click.echo(json.dumps(r))
