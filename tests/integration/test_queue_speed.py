"""The queue's speed features against a real server: the adaptive claim batch, the pgbench ceiling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bus import queue_bench
from bus.client import Bus
from bus.worker import Task
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def bus(db_url: str, settings_for: Callable[..., Any]) -> AsyncIterator[Bus]:
    b = await Bus.open(settings_for(db_url))
    yield b
    await b.close()


async def _drain(bus: Bus, queue: str, n: int, **config: Any) -> tuple[int, int]:
    """Run ``n`` tasks through one worker; returns (claims it made, most handlers at once)."""
    running = 0
    most = 0
    done = asyncio.Event()
    finished = 0

    async def handler(task: Task) -> None:
        nonlocal running, most, finished
        running += 1
        most = max(most, running)
        await asyncio.sleep(0)
        running -= 1
        finished += 1
        if finished == n:
            done.set()

    await bus.queue.enqueue_many(queue, [{"n": i} for i in range(n)])
    worker = bus.worker(queue, handler, **config)
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(done.wait(), 30)
    worker.stop()
    await run
    return len(worker.claim_seconds), most


async def test_a_deep_queue_is_claimed_in_growing_batches_within_the_concurrency(bus: Bus) -> None:
    fixed_claims, fixed_most = await _drain(bus, "fixed", 120, concurrency=2, batch=2, batch_max=2)
    claims, most = await _drain(bus, "adaptive", 120, concurrency=2, batch=2, batch_max=32)
    assert fixed_claims >= 60  # two at a time
    assert claims < fixed_claims / 3, (claims, fixed_claims)
    assert most <= 2 and fixed_most <= 2  # tasks claimed ahead wait for a slot
    stats = {(r["queue"], r["status"]): r["tasks"] for r in await bus.queue.stats()}
    assert stats[("adaptive", "done")] == 120 and ("adaptive", "running") not in stats


async def test_tasks_claimed_ahead_go_back_at_once_when_the_worker_stops(bus: Bus) -> None:
    release = asyncio.Event()
    started: list[int] = []

    async def handler(task: Task) -> None:
        started.append(task.payload["n"])
        if len(started) > 20:
            await release.wait()  # the task in the slot holds it; the others wait behind it

    await bus.queue.enqueue_many("ahead", [{"n": i} for i in range(100)])
    worker = bus.worker("ahead", handler, concurrency=1, batch=1, batch_max=16)
    run = asyncio.create_task(worker.run())

    async def holds_more_than_it_runs() -> bool:
        rows = await bus.queue.list_tasks("ahead", "running")
        return len(started) > 20 and len(rows) > 1

    await eventually(holds_more_than_it_runs, timeout=20, what="tasks claimed ahead of a busy slot")
    worker.stop(grace=0.2)
    await asyncio.wait_for(run, 10)
    assert await bus.queue.list_tasks("ahead", "running") == []
    queued = await bus.queue.list_tasks("ahead", "queued", limit=200)
    done = await bus.queue.list_tasks("ahead", "done", limit=200)
    assert len(queued) + len(done) == 100
    assert all(t["attempts"] == 0 for t in queued)  # released without counting an attempt


async def test_the_ceiling_drains_the_queue_through_pgbench(bus: Bus, db_url: str) -> None:
    await bus.queue.enqueue_many("ceiling", [{"n": i} for i in range(300)])
    # Rounds for four times the tasks: two clients' claims can skip each other's locked rows and
    # come back short, and a claim on an empty queue does nothing.
    run = await queue_bench.pgbench_drain(bus.pool, db_url, "ceiling", 1200, clients=2, batch=50)
    assert run.done == 300 and run.jobs_per_s > 0
    assert (await queue_bench.counts(bus.pool, "ceiling"))["queued"] == 0
    assert "\\gset" in queue_bench.drain_script()


async def test_preloading_finished_tasks_and_index_sizes(bus: Bus) -> None:
    assert await queue_bench.preload_finished(bus.pool, 2500, "kept") == 2500
    assert (await queue_bench.counts(bus.pool, "kept"))["done"] == 2500
    sizes = await queue_bench.index_sizes(bus.pool)
    assert {"tasks_pkey", "tasks_ready", "tasks_finished"} <= set(sizes) and sizes["tasks_pkey"] > 0
    await queue_bench.forget_queue(bus.pool, "kept")
    assert (await queue_bench.counts(bus.pool, "kept"))["done"] == 0


async def test_the_profile_names_the_queue_functions_that_took_the_server_time(bus: Bus) -> None:
    source = await queue_bench.profile_start(bus.pool)
    if source == "":
        pytest.skip("neither pg_stat_statements nor a superuser here")
    # track_functions applies from the next connection on: a fresh bus, as a benchmark round opens.
    async with Bus.connect(bus.settings) as fresh:
        await _drain(fresh, "profiled", 50)
    top = await queue_bench.profile_stop(bus.pool, source)
    names = " ".join(t.name for t in top)
    assert "claim_tasks" in names and "complete_tasks" in names
    assert all(t.calls > 0 and t.total_ms >= 0 for t in top)
