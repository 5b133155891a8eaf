"""The task queue: enqueue, inspect, retry, cancel, and await results.

Semantics are at least once, with leases: see :mod:`bus.worker` for the side
that runs tasks. Every operation is also a SQL function (``bg.enqueue``,
``bg.retry_task``, ``bg.cancel_task`` ...), so other apps need no Python.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bus import db
from bus.errors import InvalidArgument, NotFound, TaskCancelled, TaskFailed

__all__ = ["FINAL", "STATUSES", "Options", "Queue", "TaskCancelled", "TaskFailed", "check_status"]

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINAL = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class Options:
    """How a task runs: validated once, shared by single and batch enqueues."""

    priority: int = 0
    run_at: datetime | None = None
    max_attempts: int = 5
    timeout: float | None = None


def check_status(status: str | None) -> None:
    """Refuse an unknown status with the list of known ones."""
    if status is not None and status not in STATUSES:
        raise InvalidArgument(f"unknown task status {status!r}", hint=f"one of {', '.join(STATUSES)}")


class Queue:
    """Client side of ``bg.tasks``."""

    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def enqueue(
        self,
        queue: str,
        payload: Any = None,
        *,
        priority: int = 0,
        run_at: datetime | None = None,
        delay: float | None = None,
        dedupe_key: str | None = None,
        max_attempts: int = 5,
        timeout: float | None = None,
        conn: db.Connection | None = None,
    ) -> int:
        """Add a task; returns its id, or the id of the active task with ``dedupe_key``."""
        if delay is not None:
            run_at = datetime.now().astimezone() + timedelta(seconds=delay)
        task_id: int = await db.call(
            conn or self._pool,
            "queue_enqueue",
            queue,
            payload if payload is not None else {},
            priority,
            run_at,
            dedupe_key,
            max_attempts,
            timeout,
        )
        return task_id

    async def enqueue_many(
        self,
        queue: str,
        payloads: Sequence[Any],
        *,
        dedupe_keys: Sequence[str | None] | None = None,
        options: Options = Options(),
    ) -> list[int]:
        """Add many tasks to one queue in one statement; returns the new ids."""
        if dedupe_keys is not None and len(dedupe_keys) != len(payloads):
            raise InvalidArgument("dedupe_keys must have one entry per payload")
        args: list[Any] = [
            queue,
            [p if p is not None else {} for p in payloads],
            options.priority,
            options.run_at,
            options.max_attempts,
            options.timeout,
        ]
        try:
            if dedupe_keys is None:
                rows = await db.call(self._pool, "queue_enqueue_many_plain", *args)
            else:
                rows = await db.call(self._pool, "queue_enqueue_many", *args, list(dedupe_keys))
        except InvalidArgument as exc:
            constraint = getattr(exc.__cause__, "constraint_name", None)
            if constraint is None:
                raise
            raise InvalidArgument(
                f"bad task option for queue {queue!r}: {constraint}",
                hint="queue names are 1-100 of [A-Za-z0-9_.:-]; priority 0-32767; "
                "max_attempts 1-1000; timeout > 0",
            ) from exc.__cause__
        return [r["id"] for r in rows]

    async def get(self, task_id: int) -> dict[str, Any]:
        """Everything about one task, including its traceback."""
        row = await db.call(self._pool, "queue_get", task_id)
        if row is None:
            raise NotFound(f"no task {task_id}")
        return dict(row)

    async def list_tasks(
        self, queue: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Tasks by queue and status, newest first."""
        check_status(status)
        return [dict(r) for r in await db.call(self._pool, "queue_list", queue, status, limit)]

    async def retry(self, task_id: int) -> bool:
        """Put a failed or cancelled task back in its queue."""
        return bool(await db.call(self._pool, "queue_retry", task_id))

    async def retry_all(self, queue: str | None = None, status: str = "failed") -> int:
        """Re-queue every failed (or cancelled) task of ``queue`` (None: all queues)."""
        return int(await db.call(self._pool, "queue_retry_many", queue, status))

    async def cancel(self, task_id: int) -> str | None:
        """Cancel a task: ``cancelled``, ``cancelling`` (running), its final status, or None."""
        status: str | None = await db.call(self._pool, "queue_cancel", task_id)
        return status

    async def cancel_all(self, queue: str | None = None, status: str = "queued") -> int:
        """Cancel every queued (or running) task of ``queue`` (None: all queues)."""
        return int(await db.call(self._pool, "queue_cancel_many", queue, status))

    async def set_limit(self, queue: str, limit: int | None) -> None:
        """Set a global concurrency limit that every worker of ``queue`` respects."""
        await db.call(self._pool, "queue_set_limit", queue, limit)

    async def stats(self) -> list[dict[str, Any]]:
        """Tasks per queue and status, with the oldest ready task's age."""
        return [dict(r) for r in await db.call(self._pool, "queue_stats")]

    async def prune(self, older_than: timedelta) -> int:
        """Delete finished tasks older than ``older_than``."""
        return int(await db.call(self._pool, "queue_prune", older_than))

    async def result(self, task_id: int, timeout: float | None = None) -> Any:
        """Wait for a task to finish and return its result.

        Raises :class:`TaskFailed` or :class:`TaskCancelled`, or ``TimeoutError``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        while True:
            row = await db.call(self._pool, "queue_result", task_id)
            if row is None:
                raise NotFound(f"no task {task_id}")
            if row["status"] == "done":
                return row["result"]
            if row["status"] == "failed":
                raise TaskFailed(
                    f"task {task_id} failed after {row['attempts']} attempts: {row['last_error']}"
                )
            if row["status"] == "cancelled":
                raise TaskCancelled(f"task {task_id} was cancelled")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"task {task_id} is still {row['status']}")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 0.25)
