"""Workers: claim tasks in batches, run their handlers, and record the outcome.

A claim (``bg.claim_tasks``) takes up to a batch of runnable tasks with
``FOR UPDATE SKIP LOCKED`` and gives each a lease. While a handler runs, the
worker renews its leases; a worker killed with ``kill -9`` stops renewing, its
leases expire, and the next claim re-claims those tasks, so nothing is lost
(at-least-once). Completions are batched per worker in a separate statement
from claims: finishing one batch and claiming the next in one statement can
deadlock between workers while draining.

Handlers are ``async def handler(task: Task) -> result`` (plain functions run
in a thread). The return value is stored as the task's result. A handler that
raises is retried with exponential backoff and jitter until ``max_attempts``,
then the task is ``failed`` (the dead letter). Cancellation is cooperative: a
handler checks ``task.cancel_requested`` or calls ``task.raise_if_cancelled()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import random
import secrets
import socket
import time
import traceback
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from bus import db
from bus.errors import BgError
from bus.notifier import Notifier
from bus.waiting import wait_event

logger = logging.getLogger(__name__)


class Cancelled(BgError):
    """The task was cancelled while it ran."""


@dataclass
class Task:
    """A claimed task, as its handler sees it."""

    id: int
    queue: str
    payload: Any
    priority: int
    attempt: int
    max_attempts: int
    timeout: float | None
    created_at: datetime
    _cancel: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def cancel_requested(self) -> bool:
        """Whether someone asked to cancel this task."""
        return self._cancel.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` if someone asked to cancel this task."""
        if self._cancel.is_set():
            raise Cancelled(f"task {self.id} was cancelled")

    async def wait_cancelled(self) -> None:
        """Return once someone asks to cancel this task."""
        await self._cancel.wait()


Handler = Callable[[Task], Awaitable[Any]] | Callable[[Task], Any]


def backoff_delay(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Seconds to wait before retry ``attempt`` + 1: exponential, capped, jittered."""
    return float(min(cap, base * 2 ** max(attempt - 1, 0)) * random.uniform(0.5, 1.0))


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class QueueWaker:
    """Hands one process's ``bg_tasks`` NOTIFYs for a queue to its idle workers.

    A NOTIFY wakes one idle worker, not all of them: a worker that then claims a
    full batch wakes the next, so a burst fans out while a trickle doesn't make
    every worker run an empty claim. It also remembers when the next delayed
    task is due (``queue@epoch`` notifications and local retries).
    """

    def __init__(self) -> None:
        self._idle: list[asyncio.Event] = []
        self._pending = False
        self.empty = False  # the last claim found no more ready tasks
        self.next_due: float | None = None

    def on_notify(self, payload: str) -> None:
        _, at, due = payload.partition("@")
        if at:
            with contextlib.suppress(ValueError):
                self.note_due(float(due))
        else:
            self.wake_one()

    def note_due(self, when: float) -> None:
        if self.next_due is None or when < self.next_due:
            self.next_due = when
            self.wake_all()  # idle workers recompute how long to sleep

    def wake_one(self) -> None:
        self.empty = False
        if self._idle:
            self._idle.pop(0).set()
        else:
            self._pending = True

    def wake_all(self) -> None:
        self.empty = False
        idle, self._idle = self._idle, []
        for event in idle:
            event.set()
        self._pending = True

    def take_pending(self) -> bool:
        pending, self._pending = self._pending, False
        return pending

    def _due_now(self) -> bool:
        """Whether the next delayed task is due; if so, forget it and look again."""
        if self.next_due is None or self.next_due > time.time():
            return False
        self.next_due = None
        self.empty = False
        return True

    async def wait(self, timeout: float) -> bool:
        """Sleep until woken, or ``timeout`` seconds, or the next due task.

        Returns True when a delayed task fell due (look in the table for the next one).
        """
        if self._due_now():
            return True
        if self.next_due is not None:
            timeout = min(timeout, self.next_due - time.time() + 0.001)
        event = asyncio.Event()
        self._idle.append(event)
        try:
            await wait_event(event, timeout)
        finally:
            with contextlib.suppress(ValueError):
                self._idle.remove(event)
        return self._due_now()


_wakers: weakref.WeakKeyDictionary[Notifier, dict[str, QueueWaker]] = weakref.WeakKeyDictionary()


def waker_for(notifier: Notifier | None, queue: str) -> QueueWaker:
    """The process-wide waker of ``queue`` on ``notifier`` (a private one without)."""
    if notifier is None:
        return QueueWaker()
    by_queue = _wakers.setdefault(notifier, {})
    if queue not in by_queue:
        waker = by_queue[queue] = QueueWaker()

        def route(payload: str) -> None:
            if payload.partition("@")[0] == queue:
                waker.on_notify(payload)

        notifier.listen("bg_tasks", route)
        notifier.on_reconnect(waker.wake_all)
    return by_queue[queue]


class Worker:
    """Runs one queue's tasks with at most ``concurrency`` at a time in this process."""

    def __init__(
        self,
        pool: db.Pool,
        queue: str,
        handler: Handler,
        *,
        notifier: Notifier | None = None,
        concurrency: int = 10,
        batch: int = 10,
        lease: float = 30.0,
        poll_interval: float = 2.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        worker_id: str | None = None,
        gather_delay: float = 0.002,
        flush_size: int = 100,
        flush_delay: float = 0.01,
    ) -> None:
        if concurrency < 1 or batch < 1:
            raise ValueError("concurrency and batch must be at least 1")
        self.pool = pool
        self.queue = queue
        self.handler = handler
        self.notifier = notifier
        self.concurrency = concurrency
        self.batch = batch
        self.lease = lease
        self.poll_interval = poll_interval
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.worker_id = worker_id or make_worker_id()
        self.gather_delay = gather_delay
        self.flush_size = flush_size
        self.flush_delay = flush_delay
        self.processed = 0
        self._is_async = inspect.iscoroutinefunction(handler)
        self._inflight: dict[int, tuple[Task, asyncio.Task[None]]] = {}
        self._done: list[tuple[int, Any]] = []
        self._done_ready = asyncio.Event()
        self._waker = waker_for(notifier, queue)
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self._undo: list[Callable[[], None]] = []

    # --- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and run tasks until :meth:`stop`; then finish or release in-flight ones."""
        if self.notifier is not None:
            self._undo.append(self.notifier.listen("bg_task_cancel", self._on_cancel_notify))
        helpers = [
            asyncio.create_task(self._flush_loop(), name=f"worker-{self.queue}-flush"),
            asyncio.create_task(self._renew_loop(), name=f"worker-{self.queue}-renew"),
        ]
        try:
            await self._claim_loop()
        finally:
            for undo in self._undo:
                undo()
            helpers[1].cancel()
            await self._drain_inflight()
            self._stopping.set()
            self._done_ready.set()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._flush()

    def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; in-flight tasks get ``grace`` seconds before they are released."""
        self._grace = grace
        self._stopping.set()
        self._waker.wake_all()
        self._slot_free.set()

    _grace = 10.0

    def pause(self) -> None:
        """Stop claiming new tasks; running ones finish."""
        self._paused = True

    def resume(self) -> None:
        """Claim tasks again after :meth:`pause`."""
        self._paused = False
        self._waker.wake_all()

    _paused = False

    # --- claiming -------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        look_ahead = True  # ask the table when the next delayed task is due
        while not self._stopping.is_set():
            free = self.concurrency - len(self._inflight)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            if free < self.batch and self._inflight and not self._waker.empty:
                await self._gather_slots()
                free = self.concurrency - len(self._inflight)
            want = min(free, self.batch)
            if self._paused or (self._waker.empty and not self._waker.take_pending()):
                look_ahead = await self._idle()
                continue
            self._waker.take_pending()
            try:
                rows = await db.run(self.pool, "queue_claim", self.queue, want, self.worker_id, self.lease)
            except db.DB_ERRORS as exc:
                logger.warning("worker %s: claim failed: %s", self.queue, exc)
                await self._sleep(1.0)
                continue
            for row in rows:
                self._start(row)
            if rows and rows[0]["more"]:
                self._waker.wake_one()  # more are ready: let an idle worker help
                continue
            self._waker.empty = True
            if len(rows) == want:
                continue
            if look_ahead:
                await self._look_ahead()
            look_ahead = await self._idle()

    async def _gather_slots(self) -> None:
        """Let more slots free up for a moment, so claims stay batched.

        Without this, handlers finishing one by one turn into claims of one task each.
        """
        deadline = time.monotonic() + self.gather_delay
        while self.concurrency - len(self._inflight) < self.batch and self._inflight:
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
        sleeper = asyncio.ensure_future(self._waker.wait(self.poll_interval))
        waits: list[asyncio.Future[Any]] = [sleeper, asyncio.ensure_future(self._stopping.wait())]
        if self._inflight:
            self._slot_free.clear()
            waits.append(asyncio.ensure_future(self._slot_free.wait()))
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for fut in pending:
            fut.cancel()
        polled = time.monotonic() - began >= self.poll_interval * 0.99
        if polled:
            self._waker.empty = False  # look again: leases expire and other apps write rows
        fell_due = sleeper.done() and not sleeper.cancelled() and sleeper.result()
        return polled or bool(fell_due)

    async def _sleep(self, seconds: float) -> None:
        await wait_event(self._stopping, seconds)

    def _on_cancel_notify(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            entry = self._inflight.get(int(payload))
            if entry is not None:
                entry[0]._cancel.set()

    # --- running --------------------------------------------------------------------

    def _start(self, row: asyncpg.Record) -> None:
        task = Task(
            id=row["id"],
            queue=row["queue"],
            payload=row["payload"],
            priority=row["priority"],
            attempt=row["attempts"],
            max_attempts=row["max_attempts"],
            timeout=row["timeout_s"],
            created_at=row["created_at"],
        )
        runner = asyncio.create_task(self._execute(task), name=f"task-{task.id}")
        self._inflight[task.id] = (task, runner)

    async def _execute(self, task: Task) -> None:
        try:
            async with asyncio.timeout(task.timeout):
                if self._is_async:
                    result = await self.handler(task)
                else:
                    result = await asyncio.to_thread(self.handler, task)
        except Cancelled as exc:
            await self._fail(task, str(exc), "", cancelled=True)
        except TimeoutError:
            await self._fail(task, f"timed out after {task.timeout}s", "")
        except asyncio.CancelledError:
            raise  # shutdown: the task is released, not failed
        except Exception as exc:
            await self._fail(task, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        else:
            self._done.append((task.id, result))
            if len(self._done) == 1 or len(self._done) >= self.flush_size:
                self._done_ready.set()
        finally:
            self._inflight.pop(task.id, None)
            self.processed += 1
            self._slot_free.set()

    async def _fail(self, task: Task, error: str, tb: str, *, cancelled: bool = False) -> None:
        delay = backoff_delay(task.attempt, self.backoff_base, self.backoff_cap)
        if not cancelled and task.attempt < task.max_attempts:
            self._waker.note_due(time.time() + delay)
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

    async def _flush_loop(self) -> None:
        """Record completions in batches: up to ``flush_size`` rows or ``flush_delay`` old."""
        while not self._stopping.is_set():
            await self._done_ready.wait()
            self._done_ready.clear()
            deadline = time.monotonic() + self.flush_delay
            while len(self._done) < self.flush_size and not self._stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                await wait_event(self._done_ready, remaining)
                self._done_ready.clear()
            await self._flush()

    async def _flush(self) -> None:
        while self._done:
            done, self._done = self._done, []
            ids = [task_id for task_id, _ in done]
            results = [result for _, result in done]
            try:
                await db.run(self.pool, "queue_complete", ids, [_to_json(r) for r in results], self.worker_id)
            except db.DB_ERRORS as exc:
                logger.warning(
                    "worker %s: could not record %d completions: %s; retrying", self.queue, len(ids), exc
                )
                self._done = done + self._done
                await asyncio.sleep(0.5)
                if self._stopping.is_set():
                    return

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            if not self._inflight:
                continue
            try:
                rows = await db.run(
                    self.pool, "queue_renew", list(self._inflight), self.worker_id, self.lease
                )
            except db.DB_ERRORS as exc:
                logger.warning("worker %s: lease renewal failed: %s", self.queue, exc)
                continue
            for row in rows:
                entry = self._inflight.get(row["id"])
                if entry is not None and row["cancel_requested"]:
                    entry[0]._cancel.set()

    async def _drain_inflight(self) -> None:
        if not self._inflight:
            return
        runners = [runner for _, runner in self._inflight.values()]
        _, pending = await asyncio.wait(runners, timeout=self._grace)
        if not pending:
            return
        ids = [task_id for task_id, (_, r) in list(self._inflight.items()) if r in pending]
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


def _to_json(value: Any) -> str:
    """A handler's result as JSON text; a result that isn't JSON is stored as its repr."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return json.dumps({"repr": repr(value)})
