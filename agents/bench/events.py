"""``bgagents bench events``: events published and delivered per second, and their latency."""

from __future__ import annotations

import asyncio
import time

import click

from agents.bench.common import bench, bench_database, emit, percentile
from agents.cli.root import settings_of
from bus import scratch
from bus.client import Bus
from bus.config import Settings


async def run_events(
    settings: Settings, url: str, *, rate: float, seconds: float, publishers: int
) -> dict[str, float]:
    """Publish at ``rate`` events/s for ``seconds``; one subscriber measures latency."""
    bench_settings = Settings(
        **{**settings.__dict__, "database_url": url, "pool_min": 2, "pool_max": publishers + 6}
    )
    latencies: list[float] = []
    async with Bus.connect(bench_settings) as bus:
        cursor = await bus.events.current_cursor()
        total = int(rate * seconds)
        delivered = 0
        all_in = asyncio.Event()

        async def subscriber() -> None:
            nonlocal delivered
            async for event in bus.subscribe(["bench"], after=cursor):
                latencies.append((time.time() - event.payload["t"]) * 1000)
                delivered += 1
                if delivered >= total:
                    all_in.set()
                    return

        async def publisher(index: int) -> None:
            interval = publishers / rate
            due = time.perf_counter() + index * (interval / publishers)
            for _ in range(index, total, publishers):
                pause = due - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)
                await bus.publish("bench", {"t": time.time()})
                due += interval

        reader = asyncio.create_task(subscriber())
        began = time.perf_counter()
        await asyncio.gather(*(publisher(i) for i in range(publishers)))
        published_s = time.perf_counter() - began
        try:
            await asyncio.wait_for(all_in.wait(), timeout=30)
        finally:
            reader.cancel()
        delivered_s = time.perf_counter() - began
        await scratch.empty_events(bus.pool)
    return {
        "published_per_s": total / published_s,
        "delivered_per_s": delivered / delivered_s,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "events": float(total),
    }


@bench.command("events")
@click.option(
    "--rate",
    default=1000.0,
    show_default=True,
    type=click.FloatRange(1),
    help="Events per second to publish.",
)
@click.option("--seconds", default=10.0, show_default=True, type=click.FloatRange(1))
@click.option("--publishers", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on the last line.")
@click.pass_context
def bench_events(ctx: click.Context, rate: float, seconds: float, publishers: int, as_json: bool) -> None:
    """Events published and delivered per second, and publish-to-delivery latency."""
    settings = settings_of(ctx)

    async def go() -> dict[str, float]:
        url = await bench_database(settings)
        return await run_events(settings, url, rate=rate, seconds=seconds, publishers=publishers)

    r = asyncio.run(go())
    summary = {
        "rate": rate,
        "seconds": seconds,
        "publishers": publishers,
        **{k: round(v, 2) for k, v in r.items()},
    }
    emit(
        [
            ("published/s", f"{r['published_per_s']:,.0f}"),
            ("delivered/s", f"{r['delivered_per_s']:,.0f}"),
            ("p50 / p99 ms", f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}"),
        ],
        summary,
        as_json,
    )
