"""``bgagents bench queue``: our queue in PGQueuer's benchmark shape, alone or against PGQueuer."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import click

from agents.bench.common import BENCH_QUEUE, bench, bench_database, emit, percentile
from agents.cli.root import settings_of
from bus import scratch
from bus.client import Bus
from bus.config import Settings
from bus.worker import Task

logger = logging.getLogger(__name__)


def _noop() -> None:
    """The sync half of the "mixed" workload."""


class _Recorder:
    """Counts no-op jobs and their latency from enqueue to start."""

    def __init__(self) -> None:
        self.count = 0
        self.latencies: list[float] = []
        self.target: int | None = None
        self.reached = asyncio.Event()

    async def handler(self, task: Task) -> None:
        if task.payload.get("sync"):
            await asyncio.to_thread(_noop)
        self.latencies.append((time.time() - task.payload["t"]) * 1000)
        self.count += 1
        if self.target is not None and self.count >= self.target:
            self.reached.set()


async def run_ours(
    settings: Settings,
    url: str,
    *,
    mode: str,
    enqueuers: int,
    enqueue_batch: int,
    dequeuers: int,
    dequeue_batch: int,
    seconds: float,
    drain: int,
    workload: str = "async",
) -> dict[str, float]:
    """Our queue in PGQueuer's benchmark shape: no-op handlers, N enqueuers, M workers."""

    def payloads(n: int) -> list[dict[str, Any]]:
        t = time.time()
        if workload == "mixed":
            return [{"t": t, "sync": random.random() < 0.5} for _ in range(n)]
        return [{"t": t}] * n

    pool_size = max(10, dequeuers * 2 + enqueuers + 4)
    bench_settings = Settings(
        **{**settings.__dict__, "database_url": url, "pool_min": 2, "pool_max": pool_size}
    )
    recorder = _Recorder()
    async with Bus.connect(bench_settings) as bus:
        await scratch.empty_tasks(bus.pool)
        workers = [
            bus.worker(BENCH_QUEUE, recorder.handler, concurrency=dequeue_batch, batch=dequeue_batch)
            for _ in range(dequeuers)
        ]
        if mode == "drain":
            for start in range(0, drain, 1000):
                size = min(1000, drain - start)
                await bus.queue.enqueue_many(BENCH_QUEUE, payloads(size))
            await scratch.analyze_tasks(bus.pool)
            recorder.target = drain
            began = time.perf_counter()
            runs = [asyncio.create_task(w.run()) for w in workers]
            await recorder.reached.wait()
            for w in workers:
                w.stop()
            await asyncio.gather(*runs)  # includes flushing the last completions
            elapsed = time.perf_counter() - began
            done = recorder.count
        else:
            runs = [asyncio.create_task(w.run()) for w in workers]
            stop = asyncio.Event()

            async def enqueuer() -> None:
                while not stop.is_set():
                    await bus.queue.enqueue_many(BENCH_QUEUE, payloads(enqueue_batch))

            feeders = [asyncio.create_task(enqueuer()) for _ in range(enqueuers)]
            before = recorder.count
            began = time.perf_counter()
            await asyncio.sleep(seconds)
            done = recorder.count - before
            elapsed = time.perf_counter() - began
            stop.set()
            await asyncio.gather(*feeders)
            for w in workers:
                w.stop(grace=5)
            await asyncio.gather(*runs)
        await scratch.empty_tasks(bus.pool)
    return {
        "jobs_per_s": done / elapsed,
        "p50_ms": percentile(recorder.latencies, 0.50),
        "p99_ms": percentile(recorder.latencies, 0.99),
        "jobs": float(done),
    }


@bench.command("queue")
@click.option("--enqueuers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--enqueue-batch", default=10, show_default=True, type=click.IntRange(1, 10000))
@click.option("--dequeuers", default=5, show_default=True, type=click.IntRange(1, 64))
@click.option("--dequeue-batch", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--seconds", default=15.0, show_default=True, type=click.FloatRange(1))
@click.option("--drain", default=None, type=click.IntRange(1), help="Drain this many queued jobs.")
@click.option(
    "--compare",
    type=click.Choice(["pgqueuer"]),
    default=None,
    help="Run PGQueuer in the same shape in the same run.",
)
@click.option(
    "--workload",
    type=click.Choice(["async", "mixed"]),
    default="async",
    show_default=True,
    help="async: no-op async handlers; mixed: half sync (run in a thread), half async, "
    "as PGQueuer's own benchmark tool does.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on the last line.")
@click.pass_context
def bench_queue(
    ctx: click.Context,
    enqueuers: int,
    enqueue_batch: int,
    dequeuers: int,
    dequeue_batch: int,
    seconds: float,
    drain: int | None,
    compare: str | None,
    workload: str,
    as_json: bool,
) -> None:
    """Queue throughput (default) or drain time, optionally against PGQueuer."""
    settings = settings_of(ctx)
    mode = "drain" if drain else "throughput"
    shape = dict(
        mode=mode,
        enqueuers=enqueuers,
        enqueue_batch=enqueue_batch,
        dequeuers=dequeuers,
        dequeue_batch=dequeue_batch,
        seconds=seconds,
        drain=drain or 0,
        workload=workload,
    )

    async def go() -> dict[str, Any]:
        url = await bench_database(settings)
        click.echo(
            f"bench queue: {mode}, {enqueuers} enqueuer(s) x {enqueue_batch}, "
            f"{dequeuers} dequeuer(s) x {dequeue_batch}"
            + (f", draining {drain} jobs" if drain else f", {seconds:.0f}s"),
            err=True,
        )
        ours = await run_ours(settings, url, **shape)  # type: ignore[arg-type]
        summary: dict[str, Any] = {
            "mode": mode,
            **{k: v for k, v in shape.items() if k != "mode"},
            "ours_jobs_per_s": round(ours["jobs_per_s"], 1),
            "p50_ms": round(ours["p50_ms"], 2),
            "p99_ms": round(ours["p99_ms"], 2),
        }
        if compare == "pgqueuer":
            from agents.bench.pgqueuer import run_pgqueuer

            theirs = await run_pgqueuer(url, **shape)  # type: ignore[arg-type]
            summary.update(
                pgqueuer_jobs_per_s=round(theirs["jobs_per_s"], 1),
                pgqueuer_p50_ms=round(theirs["p50_ms"], 2),
                pgqueuer_p99_ms=round(theirs["p99_ms"], 2),
                ratio=round(ours["jobs_per_s"] / theirs["jobs_per_s"], 2),
            )
        return summary

    summary = asyncio.run(go())
    rows = [
        ("bgagents jobs/s", f"{summary['ours_jobs_per_s']:,.0f}"),
        ("bgagents p50 / p99 ms", f"{summary['p50_ms']:.1f} / {summary['p99_ms']:.1f}"),
    ]
    if "ratio" in summary:
        rows += [
            ("pgqueuer jobs/s", f"{summary['pgqueuer_jobs_per_s']:,.0f}"),
            ("pgqueuer p50 / p99 ms", f"{summary['pgqueuer_p50_ms']:.1f} / {summary['pgqueuer_p99_ms']:.1f}"),
            ("ratio (ours / pgqueuer)", f"{summary['ratio']:.2f}x"),
        ]
    emit(rows, summary, as_json)
