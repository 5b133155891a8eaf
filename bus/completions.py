"""A worker's completions: recorded in batches, one statement for up to ``flush_size`` tasks.

A handler's success is noted with :meth:`Completions.add`; a background loop
(:meth:`Completions.run`) records what gathered once it holds ``flush_size``
completions or the oldest is ``flush_delay`` seconds old, so a busy worker
finishes a hundred tasks with one round trip while a trickle waits at most a
few milliseconds. A failed write keeps the completions and retries; if the
worker dies first, their leases expire and the tasks run again (at least once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bus import db
from bus.task import result_json
from bus.waiting import wait_event

logger = logging.getLogger(__name__)


class Completions:
    """Finished tasks of one worker waiting to be recorded as done."""

    def __init__(
        self, pool: db.Pool, queue: str, worker_id: str, flush_size: int, flush_delay: float
    ) -> None:
        self._pool = pool
        self._queue = queue
        self._worker_id = worker_id
        self._flush_size = flush_size
        self._flush_delay = flush_delay
        self._done: list[tuple[int, Any]] = []
        self._ready = asyncio.Event()
        self._stopping = False

    def add(self, task_id: int, result: Any) -> None:
        """Note that ``task_id`` finished with ``result``; it is recorded soon."""
        self._done.append((task_id, result))
        if len(self._done) == 1 or len(self._done) >= self._flush_size:
            self._ready.set()

    def stop(self) -> None:
        """End :meth:`run` after its current write; :meth:`flush` records the rest."""
        self._stopping = True
        self._ready.set()

    async def run(self) -> None:
        """Record completions in batches until :meth:`stop`."""
        while not self._stopping:
            await self._ready.wait()
            self._ready.clear()
            deadline = time.monotonic() + self._flush_delay
            while len(self._done) < self._flush_size and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                await wait_event(self._ready, remaining)
                self._ready.clear()
            await self.flush()

    async def flush(self) -> None:
        """Record every completion gathered so far (retrying while the server is away)."""
        while self._done:
            done, self._done = self._done, []
            ids = [task_id for task_id, _ in done]
            results = [result_json(result) for _, result in done]
            try:
                await db.run(self._pool, "queue_complete", ids, results, self._worker_id)
            except db.DB_ERRORS as exc:
                logger.warning(
                    "worker %s: could not record %d completions: %s; retrying", self._queue, len(ids), exc
                )
                self._done = done + self._done
                await asyncio.sleep(0.5)
                if self._stopping:
                    return
