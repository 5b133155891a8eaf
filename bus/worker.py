"""Workers: claim tasks in batches, run their handlers, and record the outcome.

A claim (``bg.claim_tasks``) takes up to a batch of runnable tasks, skipping
rows that other workers hold locked, and gives each a lease. While a handler
runs, the worker renews its leases; a worker killed with ``kill -9`` stops
renewing, its leases expire, and the next claim re-claims those tasks, so
nothing is lost (at-least-once). Completions are batched per worker in a
separate statement from claims (:mod:`bus.completions`): finishing one batch
and claiming the next in one statement can deadlock between workers while
draining.

The claim batch adapts to the backlog: while claims come back full and the
claim says more tasks are ready, each claim asks for twice as many (up to
``batch_max``, :data:`~bus.config.Settings.claim_batch_max`), and the tasks
beyond ``concurrency`` wait in the worker, holding their leases, until a slot
frees up; the next batch is claimed once half of one has gone. A deep queue so
drains in batches of a hundred (two round trips per hundred tasks), while a
trickle claims what is there, at once; a short claim drops back to ``batch``.

A handler that raises is retried with exponential backoff and jitter until
``max_attempts``, then the task is ``failed`` (the dead letter). What a handler
sees is in :mod:`bus.task`; how idle workers are woken is in :mod:`bus.waker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bus import db
from bus.completions import Completions
from bus.notifier import Notifier
from bus.task import Cancelled, Handler, Task, backoff_delay, make_worker_id
from bus.waiting import wait_event
from bus.waker import QueueWaker

__all__ = ["Cancelled", "Handler", "Task", "Worker", "WorkerConfig", "backoff_delay"]

logger = logging.getLogger(__name__)

CANCEL_CHANNEL = "bg_task_cancel"
"""The channel on which ``bg.cancel_task`` names a running task to stop.

Any login may NOTIFY on it, so a notification is only a hint: the worker reads the
task's row and cancels the handler only when the row says ``cancel_requested``."""


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker claims, runs and records tasks. Every field has a working default."""

    concurrency: int = 10
    """Tasks that run at once in this worker."""
    batch: int = 10
    """Most tasks claimed by one query while the queue is shallow."""
    batch_max: int = 100
    """Most tasks claimed by one query while the backlog is deep (the adaptive batch's bound)."""
    lease: float = 30.0
    """Seconds a claim lasts; renewed every third of it while the handler runs."""
    poll_interval: float = 2.0
    """Seconds an idle worker waits before looking in the table without a NOTIFY."""
    backoff_base: float = 1.0
    """Seconds before the first retry; doubles with each attempt (jittered)."""
    backoff_cap: float = 300.0
    """Longest wait before a retry, in seconds."""
    worker_id: str | None = None
    """The name leases are held under (None: ``host:pid:random``)."""
    gather_delay: float = 0.002
    """Seconds to let more slots free up, so that claims stay batched."""
    flush_size: int = 100
    """Completions recorded by one statement at most."""
    flush_delay: float = 0.01
    """Longest wait, in seconds, before recording a completion."""

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.batch < 1 or self.batch_max < 1:
            raise ValueError("concurrency, batch and batch_max must be at least 1")


class Worker:
    """Runs one queue's tasks with at most ``config.concurrency`` at a time in this process.

    ``waker`` is the queue's shared :class:`QueueWaker` (the :class:`~bus.client.Bus`
    hands out one per queue). Without one the worker makes its own, fed by
    ``notifier`` while it runs, or only by polling and due times without a notifier.
    """

    def __init__(
        self,
        pool: db.Pool,
        queue: str,
        handler: Handler,
        config: WorkerConfig | None = None,
        *,
        notifier: Notifier | None = None,
        waker: QueueWaker | None = None,
    ) -> None:
        self.pool = pool
        self.queue = queue
        self.handler = handler
        self.config = config or WorkerConfig()
        self.notifier = notifier
        self.worker_id = self.config.worker_id or make_worker_id()
        self.processed = 0
        self.claim_seconds: deque[float] = deque(maxlen=10_000)
        """How long the latest claims took (for benchmarks and diagnostics)."""
        self._is_async = inspect.iscoroutinefunction(handler)
        self._inflight: dict[int, tuple[Task, asyncio.Task[None]]] = {}
        self._completions = Completions(
            pool, queue, self.worker_id, self.config.flush_size, self.config.flush_delay
        )
        self._slots = asyncio.Semaphore(self.config.concurrency)
        self._started: set[int] = set()
        self._claim_size = 0  # the adaptive batch; 0 while the queue is shallow
        self._own_waker = waker is None
        self._waker = waker or QueueWaker()
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self._grace = 10.0
        self._paused = False
        self._cancel_checks: set[asyncio.Task[None]] = set()

    # --- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and run tasks until :meth:`stop`; then finish or release in-flight ones."""
        undo: list[Callable[[], None]] = []
        if self.notifier is not None:
            undo.append(self.notifier.listen(CANCEL_CHANNEL, self._on_cancel_notify))
            if self._own_waker:
                undo.append(self._waker.attach(self.notifier, self.queue))
        helpers = [
            asyncio.create_task(self._completions.run(), name=f"worker-{self.queue}-flush"),
            asyncio.create_task(self._renew_loop(), name=f"worker-{self.queue}-renew"),
        ]
        try:
            await self._claim_loop()
        finally:
            for u in undo:
                u()
            for check in list(self._cancel_checks):
                check.cancel()
            helpers[1].cancel()
            await self._drain_inflight()
            self._stopping.set()
            self._completions.stop()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._completions.flush()

    def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; in-flight tasks get ``grace`` seconds before they are released."""
        self._grace = grace
        self._stopping.set()
        self._waker.wake_all()
        self._slot_free.set()

    def pause(self) -> None:
        """Stop claiming new tasks; running ones finish."""
        self._paused = True

    def resume(self) -> None:
        """Claim tasks again after :meth:`pause`."""
        self._paused = False
        self._waker.wake_all()

    # --- claiming -------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        look_ahead = True  # ask the table when the next delayed task is due
        while not self._stopping.is_set():
            # A deep backlog: hold up to concurrency + the adaptive batch, and claim the
            # next batch once half of it has gone, while the rest still runs.
            room = self.config.concurrency + self._claim_size - len(self._inflight)
            if room <= 0 or (self._claim_size and room < self._claim_size // 2):
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            if not self._claim_size and room < self.config.batch and self._inflight and not self._waker.empty:
                await self._gather_slots()
                room = self.config.concurrency - len(self._inflight)
            want = min(room, self.config.batch_max if self._claim_size else self.config.batch)
            if self._paused or (self._waker.empty and not self._waker.take_pending()):
                look_ahead = await self._idle()
                continue
            self._waker.take_pending()
            began = time.perf_counter()
            try:
                rows = await db.run(
                    self.pool, "queue_claim", self.queue, want, self.worker_id, self.config.lease
                )
                self.claim_seconds.append(time.perf_counter() - began)
            except db.DB_ERRORS as exc:
                logger.warning("worker %s: claim failed: %s", self.queue, exc)
                await self._sleep(1.0)
                continue
            for row in rows:
                self._start(row)
            self._adapt(len(rows), want, bool(rows and rows[0]["more"]))
            if rows and rows[0]["more"]:
                self._waker.wake_one()  # more are ready: let an idle worker help
                continue
            self._waker.empty = True  # even after a full claim: `more` says nothing is left
            if look_ahead:
                await self._look_ahead()
            look_ahead = await self._idle()

    def _adapt(self, got: int, want: int, more: bool) -> None:
        """Double the next claim while claims come back full with more ready; else shrink back."""
        if got == want and more:
            self._claim_size = min(self.config.batch_max, max(self._claim_size, want) * 2)
        elif got < want:
            self._claim_size = 0

    async def _gather_slots(self) -> None:
        """Let more slots free up for a moment, so claims stay batched.

        Without this, handlers finishing one by one turn into claims of one task each.
        """
        deadline = time.monotonic() + self.config.gather_delay
        while self.config.concurrency - len(self._inflight) < self.config.batch and self._inflight:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._slot_free.clear()
            await wait_event(self._slot_free, remaining)

    async def _look_ahead(self) -> None:
        try:
            next_run = await db.run(self.pool, "queue_next_run_at", self.queue)
        except db.DB_ERRORS:
            return
        if next_run is not None:
            self._waker.note_due(next_run.timestamp())

    async def _idle(self) -> bool:
        """Wait for work; returns True when the wait ended by polling or a due time,
        after which the worker asks the table when the next delayed task is due."""
        if self._waker.take_pending():
            return False
        began = time.monotonic()
        sleeper = asyncio.ensure_future(self._waker.wait(self.config.poll_interval))
        waits: list[asyncio.Future[Any]] = [sleeper, asyncio.ensure_future(self._stopping.wait())]
        if self._inflight:
            self._slot_free.clear()
            waits.append(asyncio.ensure_future(self._slot_free.wait()))
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for fut in pending:
            fut.cancel()
        polled = time.monotonic() - began >= self.config.poll_interval * 0.99
        if polled:
            self._waker.empty = False  # look again: leases expire and other apps write rows
        fell_due = sleeper.done() and not sleeper.cancelled() and sleeper.result()
        return polled or bool(fell_due)

    async def _sleep(self, seconds: float) -> None:
        await wait_event(self._stopping, seconds)

    def _on_cancel_notify(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            task_id = int(payload)
            if task_id in self._inflight:
                check = asyncio.create_task(self._check_cancel(task_id), name=f"worker-{self.queue}-cancel")
                self._cancel_checks.add(check)
                check.add_done_callback(self._cancel_checks.discard)

    async def _check_cancel(self, task_id: int) -> None:
        """Cancel a running task's handler only if its row asks for it (a NOTIFY proves nothing)."""
        try:
            requested = await db.run(self.pool, "queue_cancel_requested", task_id, self.worker_id)
        except db.DB_ERRORS as exc:
            logger.warning(
                "worker %s: could not read the cancel flag of task %s: %s", self.queue, task_id, exc
            )
            return  # the next lease renewal reads the flag again
        entry = self._inflight.get(task_id)
        if requested and entry is not None:
            entry[0].request_cancel()
        elif not requested:
            logger.info(
                "worker %s: ignored a cancel notification for task %s: its row asks for none",
                self.queue,
                task_id,
            )

    # --- running --------------------------------------------------------------------

    def _start(self, row: Any) -> None:
        task = Task.from_claim(row)
        runner = asyncio.create_task(self._execute(task))  # unnamed: a name costs 2 % in a drain
        self._inflight[task.id] = (task, runner)

    async def _execute(self, task: Task) -> None:
        try:
            async with self._slots:  # claimed beyond concurrency: wait for a slot
                self._started.add(task.id)
                call = self.handler(task) if self._is_async else asyncio.to_thread(self.handler, task)
                if task.timeout is None:
                    result = await call
                else:
                    async with asyncio.timeout(task.timeout):
                        result = await call
        except Cancelled as exc:
            await self._fail(task, str(exc), "", cancelled=True)
        except TimeoutError:
            await self._fail(task, f"timed out after {task.timeout}s", "")
        except asyncio.CancelledError:
            raise  # shutdown: the task is released, not failed
        except Exception as exc:
            await self._fail(task, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        else:
            self._completions.add(task.id, result)
        finally:
            self._started.discard(task.id)
            self._inflight.pop(task.id, None)
            self.processed += 1
            self._slot_free.set()

    async def _fail(self, task: Task, error: str, tb: str, *, cancelled: bool = False) -> None:
        delay = backoff_delay(task.attempt, self.config.backoff_base, self.config.backoff_cap)
        try:
            status = await db.run(
                self.pool, "queue_fail", task.id, self.worker_id, error, tb, delay, cancelled
            )
        except db.DB_ERRORS as exc:
            logger.warning(
                "worker %s: could not record failure of task %s: %s (its lease will "
                "expire and it runs again)",
                self.queue,
                task.id,
                exc,
            )
            return
        if status == "queued":
            # Noted once the retry is recorded: its run_at (the server's now() plus the
            # delay) is then no later than this, so the wake-up at this time finds it
            # ready. Noted before the write, a worker could wake early, find nothing,
            # and look ahead just after run_at passed: no wake-up until the next poll.
            self._waker.note_due(time.time() + delay)
        logger.info(
            "task %s failed (attempt %s of %s): %s -> %s",
            task.id,
            task.attempt,
            task.max_attempts,
            error,
            status,
            extra={"task_id": task.id},
        )

    # --- completions and leases -----------------------------------------------------

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.lease / 3)
            if not self._inflight:
                continue
            try:
                rows = await db.run(
                    self.pool, "queue_renew", list(self._inflight), self.worker_id, self.config.lease
                )
            except db.DB_ERRORS as exc:
                logger.warning("worker %s: lease renewal failed: %s", self.queue, exc)
                continue
            for row in rows:
                entry = self._inflight.get(row["id"])
                if entry is not None and row["cancel_requested"]:
                    entry[0].request_cancel()

    async def _drain_inflight(self) -> None:
        if not self._inflight:
            return
        # Tasks claimed ahead that never started go back at once; started ones get the grace.
        ids_of = {runner: tid for tid, (_, runner) in self._inflight.items()}
        waiting = {runner for runner, tid in ids_of.items() if tid not in self._started}
        for runner in waiting:
            runner.cancel()
        pending = set(waiting)
        if runners := [runner for runner in ids_of if runner not in waiting]:
            _, still = await asyncio.wait(runners, timeout=self._grace)
            pending |= still
        if not pending:
            return
        ids = [ids_of[runner] for runner in pending]
        for runner in pending:
            runner.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        try:
            released = await db.run(self.pool, "queue_release", ids, self.worker_id)
            logger.info("worker %s: released %s unfinished task(s)", self.queue, released)
        except db.DB_ERRORS as exc:
            logger.warning(
                "worker %s: could not release tasks %s: %s (their leases will expire)", self.queue, ids, exc
            )
