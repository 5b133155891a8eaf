"""PGQueuer driven in a benchmark shape, to compare our own queue against it.

:func:`run_pgqueuer` runs PGQueuer (``pgqueuer==1.6.0``, the ``bench`` extra)
against the database at ``dsn`` the way PGQueuer's own benchmark tool does:
every enqueuer and every dequeuer has its own driver connection (from
:func:`bus.scratch.driver_connection`) wrapped in PGQueuer's
:class:`AsyncpgDriver`, each dequeuer is one ``QueueManager`` with batch size
``dequeue_batch``, and jobs go to a single no-op async entrypoint.

Two modes:

``throughput``
    ``enqueuers`` tasks enqueue batches of ``enqueue_batch`` jobs back to back
    for ``seconds`` while the dequeuers run. The window opens once every queue
    manager is listening (start-up is excluded); ``jobs`` counts the jobs whose
    entrypoint returned inside the window.
``drain``
    ``drain`` jobs are enqueued first (large batched inserts), then the
    dequeuers start in PGQueuer's drain mode and the clock runs until every job
    has run and every queue manager has flushed its status log and returned.
    Queue-manager start-up is inside the timed span.

Latency: each payload carries ``time.time()`` taken just before its enqueue
call, and the entrypoint records ``now - that`` in milliseconds. In drain mode
this includes the time a job sat in the pre-filled queue, so it grows with
``drain``; it is a queue-wait figure there, not a pickup latency.

PGQueuer's schema is dropped and installed again before every run
(``Queries.uninstall``, ``Queries.install``), so each round starts as its first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from bus import scratch

if TYPE_CHECKING:
    from pgqueuer.models import Job
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries

logger = logging.getLogger(__name__)

__all__ = ["ENTRYPOINT", "run_pgqueuer"]

#: The entrypoint every benchmark job is enqueued to (workload "async").
ENTRYPOINT = "bench_noop"
#: PGQueuer's own benchmark tool splits jobs between a sync and an async no-op
#: entrypoint (workload "mixed"); sync entrypoints run in a thread.
MIXED_ENTRYPOINTS = ("syncfetch", "asyncfetch")

#: How long each enqueue call of the latest throughput run took (ms), for the bench's table.
ENQUEUE_MS: list[float] = []

# Rows per enqueue call when pre-filling the queue for drain mode.
_PREFILL_CHUNK = 1000
# How long the queue managers get to verify the schema and start listening.
_READY_TIMEOUT_S = 30.0
# Grace period for the queue managers to flush and return after shutdown.
_STOP_TIMEOUT_S = 60.0


@dataclass
class _Recorder:
    """Latencies (ms) of jobs whose entrypoint returned while the recorder was open."""

    latencies_ms: list[float] = field(default_factory=list)
    open: bool = True
    target: int | None = None
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, payload: bytes | None) -> None:
        if not self.open or payload is None:
            return
        self.latencies_ms.append((time.time() - float(payload)) * 1000.0)
        if self.target is not None and len(self.latencies_ms) >= self.target:
            self.reached.set()


def _stamp() -> bytes:
    return repr(time.time()).encode()


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list; NaN when it is empty."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _summary(recorder: _Recorder, elapsed_s: float) -> dict[str, float]:
    ordered = sorted(recorder.latencies_ms)
    jobs = len(ordered)
    return {
        "jobs_per_s": jobs / elapsed_s if elapsed_s > 0 else 0.0,
        "p50_ms": percentile(ordered, 0.50),
        "p99_ms": percentile(ordered, 0.99),
        "jobs": float(jobs),
    }


async def _connect(stack: contextlib.AsyncExitStack, dsn: str) -> Queries:
    """A new connection, closed when *stack* unwinds, behind PGQueuer's driver."""
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    connection = await stack.enter_async_context(scratch.driver_connection(dsn))
    return Queries(AsyncpgDriver(connection))


async def _prepare(queries: Queries) -> None:
    """Install PGQueuer's schema afresh for this round.

    Emptying its tables is not enough: PGQueuer slows down run after run in one
    database (4,332, 3,511, 3,445, 3,039 and 3,290 jobs/s in five runs in a row
    here), as its planner statistics outlive the truncated tables. A new schema
    every round gives it the conditions of its first run, every time.
    """
    if await queries.schema_is_installed():
        await queries.uninstall()
    await queries.install()


async def _enqueue_batch(queries: Queries, size: int, workload: str = "async") -> None:
    stamp = _stamp()
    if workload == "mixed":
        names = [random.choice(MIXED_ENTRYPOINTS) for _ in range(size)]
    else:
        names = [ENTRYPOINT] * size
    await queries.enqueue(names, [stamp] * size, [0] * size)


def _sync_noop() -> None:
    """The sync half of the "mixed" workload."""


def _make_manager(queries: Queries, recorder: _Recorder) -> QueueManager:
    from pgqueuer.qm import QueueManager

    qm = QueueManager(queries)

    # ``Job`` is only imported for type checking, so say outright that the
    # handler takes no Context rather than let PGQueuer inspect the signature.
    @qm.entrypoint(ENTRYPOINT, accepts_context=False)
    async def noop(job: Job) -> None:
        recorder.record(job.payload)

    @qm.entrypoint(MIXED_ENTRYPOINTS[1], accepts_context=False)
    async def asyncfetch(job: Job) -> None:
        recorder.record(job.payload)

    # PGQueuer 1.6 runs async entrypoints only; its tool's sync no-op becomes a
    # thread hop, which is what it did inside PGQueuer before.
    @qm.entrypoint(MIXED_ENTRYPOINTS[0], accepts_context=False)
    async def syncfetch(job: Job) -> None:
        await asyncio.to_thread(_sync_noop)
        recorder.record(job.payload)

    return qm


async def _wait_listening(qm: QueueManager, task: asyncio.Task[None]) -> None:
    """Return once *qm* answers a LISTEN/NOTIFY round trip; raise if its run ended."""
    from pgqueuer.errors import FailingListenerError

    deadline = time.monotonic() + _READY_TIMEOUT_S
    while True:
        if task.done():
            task.result()  # re-raise what stopped it
            raise RuntimeError("a PGQueuer QueueManager stopped before it was listening")
        try:
            await qm.listener_healthy(timeout=timedelta(seconds=0.25))
        except FailingListenerError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"a PGQueuer QueueManager was not listening after {_READY_TIMEOUT_S:.0f}s"
                ) from None
        else:
            return


async def _stop_managers(managers: list[QueueManager], tasks: list[asyncio.Task[None]]) -> None:
    """Signal shutdown, wait for every run to flush and return, surface failures."""
    for qm in managers:
        qm.shutdown.set()
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=_STOP_TIMEOUT_S)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
        logger.warning("%d PGQueuer QueueManager(s) did not stop in time; cancelled", len(pending))
    for task in done:
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise RuntimeError("a PGQueuer QueueManager failed") from exc


async def _enqueue_loop(queries: Queries, batch: int, stop: asyncio.Event, workload: str) -> int:
    sent = 0
    while not stop.is_set():
        began = time.perf_counter()
        await _enqueue_batch(queries, batch, workload)
        ENQUEUE_MS.append((time.perf_counter() - began) * 1000)
        sent += batch
    return sent


async def _guarded(
    managers: list[QueueManager],
    tasks: list[asyncio.Task[None]],
    body: Callable[[], Awaitable[dict[str, float]]],
) -> dict[str, float]:
    """Run *body*; whatever happens, stop the queue managers before returning."""
    try:
        result = await body()
    except BaseException:
        for qm in managers:
            qm.shutdown.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    await _stop_managers(managers, tasks)
    return result


async def run_pgqueuer(
    dsn: str,
    *,
    mode: str,
    enqueuers: int = 1,
    enqueue_batch: int = 10,
    dequeuers: int = 5,
    dequeue_batch: int = 10,
    seconds: float = 15.0,
    drain: int = 50000,
    workload: str = "async",
) -> dict[str, float]:
    """Benchmark PGQueuer at *dsn*.

    Returns ``{"jobs_per_s", "p50_ms", "p99_ms", "jobs"}``; latencies are in
    milliseconds from enqueue to the entrypoint running (NaN if no job ran).
    """
    if mode not in ("throughput", "drain"):
        raise ValueError(f"mode must be 'throughput' or 'drain', not {mode!r}")
    if min(enqueuers, enqueue_batch, dequeuers, dequeue_batch) < 1:
        raise ValueError("enqueuers, enqueue_batch, dequeuers and dequeue_batch must be >= 1")
    try:
        from pgqueuer.types import QueueExecutionMode
    except ImportError as exc:
        raise RuntimeError(
            "pgqueuer is not installed; install the bench extra: pip install -e '.[bench]'"
        ) from exc

    async with contextlib.AsyncExitStack() as stack:
        await _prepare(await _connect(stack, dsn))

        recorder = _Recorder()
        managers = [_make_manager(await _connect(stack, dsn), recorder) for _ in range(dequeuers)]
        tasks: list[asyncio.Task[None]] = []

        if mode == "throughput":
            producers = [await _connect(stack, dsn) for _ in range(enqueuers)]

            async def throughput() -> dict[str, float]:
                for qm in managers:
                    tasks.append(asyncio.create_task(qm.run(batch_size=dequeue_batch)))
                await asyncio.gather(*(_wait_listening(qm, t) for qm, t in zip(managers, tasks, strict=True)))

                stop = asyncio.Event()
                ENQUEUE_MS.clear()
                started = time.perf_counter()
                loops = [
                    asyncio.create_task(_enqueue_loop(q, enqueue_batch, stop, workload)) for q in producers
                ]
                try:
                    done, _ = await asyncio.wait(loops, timeout=seconds)
                    for loop in done:  # an enqueuer can only finish early by failing
                        loop.result()
                finally:
                    recorder.open = False
                    elapsed = time.perf_counter() - started
                    stop.set()
                    sent = sum(await asyncio.gather(*loops))
                result = _summary(recorder, elapsed)
                result["enqueue_p50_ms"] = percentile(sorted(ENQUEUE_MS), 0.5)
                logger.info(
                    "pgqueuer throughput: %d enqueued, %d done in %.2fs", sent, result["jobs"], elapsed
                )
                return result

            result = await _guarded(managers, tasks, throughput)
        else:
            filler = await _connect(stack, dsn)
            prefill_started = time.perf_counter()
            remaining = drain
            while remaining > 0:
                size = min(_PREFILL_CHUNK, remaining)
                await _enqueue_batch(filler, size, workload)
                remaining -= size
            logger.info(
                "pgqueuer drain: enqueued %d jobs in %.2fs", drain, time.perf_counter() - prefill_started
            )
            # As our drain does after its pre-fill: the planner learns the table is full.
            async with scratch.driver_connection(dsn) as conn:
                await scratch.analyze_pgqueuer(conn)
            recorder.target = drain

            async def drained() -> dict[str, float]:
                started = time.perf_counter()
                for qm in managers:
                    run = qm.run(batch_size=dequeue_batch, mode=QueueExecutionMode.drain)
                    tasks.append(asyncio.create_task(run))
                # Drain mode returns once the queue is empty; the target also ends the
                # run so a worker idling on its dequeue timeout cannot stretch the clock.
                waiter = asyncio.create_task(recorder.reached.wait())
                running = set(tasks)
                try:
                    while running and not waiter.done():
                        done, _ = await asyncio.wait([*running, waiter], return_when=asyncio.FIRST_COMPLETED)
                        for task in done - {waiter}:
                            running.discard(task)
                            task.result()  # a manager that failed ends the run here
                finally:
                    waiter.cancel()
                    await asyncio.gather(waiter, return_exceptions=True)
                await _stop_managers(managers, tasks)
                elapsed = time.perf_counter() - started
                if len(recorder.latencies_ms) < drain:
                    raise RuntimeError(
                        f"PGQueuer drain stopped after {len(recorder.latencies_ms)} of {drain} jobs"
                    )
                result = _summary(recorder, elapsed)
                result["jobs_per_s"] = drain / elapsed
                left = sum(s.count for s in await filler.queue_size())
                logger.info("pgqueuer drain: %d jobs in %.2fs, %d left queued", drain, elapsed, left)
                return result

            result = await _guarded(managers, tasks, drained)

    logger.info(
        "pgqueuer %s: %.0f jobs/s, p50 %.1f ms, p99 %.1f ms over %d jobs",
        mode,
        result["jobs_per_s"],
        result["p50_ms"],
        result["p99_ms"],
        result["jobs"],
    )
    return result
