"""One round of our queue in a benchmark shape: throughput, drain, or pickup latency at a fixed rate.

Every round starts from an empty queue (finished tasks that ``--preload-finished``
added stay) and runs no-op handlers in ``dequeuers`` workers of one process,
as PGQueuer's benchmark tool does. Latency is from just before the enqueue call
to the handler's start, in milliseconds; in a drain it includes the time a task
sat in the pre-filled queue.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from agents.bench.common import BENCH_QUEUE, percentile
from bus import queue_bench, scratch
from bus.client import Bus
from bus.config import Settings
from bus.worker import Task, Worker


def _noop() -> None:
    """The sync half of the "mixed" workload."""


@dataclass(frozen=True)
class Shape:
    """How a round runs: producers, workers, and their configuration."""

    mode: str = "throughput"
    """throughput, drain or latency."""
    enqueuers: int = 1
    enqueue_batch: int = 10
    dequeuers: int = 5
    worker: dict[str, Any] = field(default_factory=dict)
    """WorkerConfig fields for every worker (empty: our defaults)."""
    seconds: float = 15.0
    drain: int = 0
    workload: str = "async"
    rate: float = 100.0
    """Tasks per second in latency mode, enqueued one at a time."""
    keep_finished: bool = False
    """Keep other queues' finished tasks (``--preload-finished``) instead of emptying the table."""


class _Recorder:
    """Counts no-op jobs and their latency from enqueue to start."""

    def __init__(self) -> None:
        self.count = 0
        self.latencies: list[float] = []
        self.enqueue_ms: list[float] = []
        self.target: int | None = None
        self.reached = asyncio.Event()

    async def handler(self, task: Task) -> None:
        self.latencies.append((time.time() - task.payload["t"]) * 1000)
        if task.payload.get("sync"):
            await asyncio.to_thread(_noop)
        self.count += 1
        if self.target is not None and self.count >= self.target:
            self.reached.set()


def _payloads(n: int, workload: str) -> list[dict[str, Any]]:
    t = time.time()
    if workload == "mixed":
        return [{"t": t, "sync": random.random() < 0.5} for _ in range(n)]
    return [{"t": t}] * n


async def prefill(bus: Bus, n: int, workload: str = "async") -> None:
    """Queue ``n`` jobs in batches of a thousand, then refresh the planner's statistics."""
    for start in range(0, n, 1000):
        await bus.queue.enqueue_many(BENCH_QUEUE, _payloads(min(1000, n - start), workload))
    await scratch.analyze_tasks(bus.pool)


def bench_settings(settings: Settings, url: str, shape: Shape) -> Settings:
    """``settings`` pointed at the scratch database, with a pool big enough for the shape."""
    pool_size = max(10, shape.dequeuers * 2 + shape.enqueuers + 4)
    return Settings(**{**settings.__dict__, "database_url": url, "pool_min": 2, "pool_max": pool_size})


async def _drain(bus: Bus, workers: list[Worker], recorder: _Recorder, shape: Shape) -> tuple[int, float]:
    await prefill(bus, shape.drain, shape.workload)
    recorder.target = shape.drain
    began = time.perf_counter()
    runs = [asyncio.create_task(w.run()) for w in workers]
    await recorder.reached.wait()
    for w in workers:
        w.stop()
    await asyncio.gather(*runs)  # includes flushing the last completions
    return recorder.count, time.perf_counter() - began


async def _throughput(
    bus: Bus, workers: list[Worker], recorder: _Recorder, shape: Shape
) -> tuple[int, float]:
    runs = [asyncio.create_task(w.run()) for w in workers]
    stop = asyncio.Event()

    async def enqueuer() -> None:
        while not stop.is_set():
            began = time.perf_counter()
            await bus.queue.enqueue_many(BENCH_QUEUE, _payloads(shape.enqueue_batch, shape.workload))
            recorder.enqueue_ms.append((time.perf_counter() - began) * 1000)

    async def paced() -> None:
        interval = 1.0 / shape.rate
        due = time.monotonic()
        while not stop.is_set():
            due += interval
            began = time.perf_counter()
            await bus.queue.enqueue(BENCH_QUEUE, {"t": time.time()})
            recorder.enqueue_ms.append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    if shape.mode == "latency":
        await asyncio.sleep(0.5)  # let every worker go idle first
        feeders = [asyncio.create_task(paced())]
    else:
        feeders = [asyncio.create_task(enqueuer()) for _ in range(shape.enqueuers)]
    before = recorder.count
    began = time.perf_counter()
    await asyncio.sleep(shape.seconds)
    done = recorder.count - before
    elapsed = time.perf_counter() - began
    stop.set()
    await asyncio.gather(*feeders)
    for w in workers:
        w.stop(grace=5)
    await asyncio.gather(*runs)
    return done, elapsed


async def _reset(bus: Bus, shape: Shape) -> None:
    if shape.keep_finished:
        await queue_bench.forget_queue(bus.pool, BENCH_QUEUE)
    else:
        await scratch.empty_tasks(bus.pool)


async def run_ours(settings: Settings, url: str, shape: Shape) -> dict[str, float]:
    """One round of our queue in ``shape``; returns jobs/s, latency and claim-time percentiles."""
    recorder = _Recorder()
    async with Bus.connect(bench_settings(settings, url, shape)) as bus:
        await _reset(bus, shape)
        workers = [bus.worker(BENCH_QUEUE, recorder.handler, **shape.worker) for _ in range(shape.dequeuers)]
        if shape.mode == "drain":
            done, elapsed = await _drain(bus, workers, recorder, shape)
        else:
            done, elapsed = await _throughput(bus, workers, recorder, shape)
        await _reset(bus, shape)
    claims = [s * 1000 for w in workers for s in w.claim_seconds]
    return {
        "jobs_per_s": done / elapsed,
        "p50_ms": percentile(recorder.latencies, 0.50),
        "p99_ms": percentile(recorder.latencies, 0.99),
        "max_ms": max(recorder.latencies, default=float("nan")),
        "claim_p99_ms": percentile(claims, 0.99),
        "enqueue_p50_ms": percentile(recorder.enqueue_ms, 0.50),
        "enqueue_p99_ms": percentile(recorder.enqueue_ms, 0.99),
        "jobs": float(done),
    }
