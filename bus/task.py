"""The task a handler receives, and the rules for its outcome: retry delay, stored result.

A handler is ``async def handler(task: Task) -> result`` (a plain function runs
in a thread). Cancellation is cooperative: the worker sets a flag when someone
asks to cancel the task (through NOTIFY, or seen at the next lease renewal),
and the handler checks ``task.cancel_requested``, calls
``task.raise_if_cancelled()`` or awaits ``task.wait_cancelled()``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bus.errors import Cancelled

__all__ = ["Cancelled", "Handler", "Task", "backoff_delay", "make_worker_id", "result_json"]


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

    @classmethod
    def from_claim(cls, row: Mapping[str, Any]) -> Task:
        """The task of one row that the claim query returned."""
        return cls(
            id=row["id"],
            queue=row["queue"],
            payload=row["payload"],
            priority=row["priority"],
            attempt=row["attempts"],
            max_attempts=row["max_attempts"],
            timeout=row["timeout_s"],
            created_at=row["created_at"],
        )

    @property
    def cancel_requested(self) -> bool:
        """Whether someone asked to cancel this task."""
        return self._cancel.is_set()

    def request_cancel(self) -> None:
        """Mark the task as asked to cancel (the worker calls this; handlers read it)."""
        self._cancel.set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` if someone asked to cancel this task."""
        if self._cancel.is_set():
            raise Cancelled(f"task {self.id} was cancelled")

    async def wait_cancelled(self) -> None:
        """Return once someone asks to cancel this task."""
        await self._cancel.wait()


Handler = Callable[[Task], Awaitable[Any]] | Callable[[Task], Any]
"""What a worker runs for each task; its return value becomes the task's result."""


def backoff_delay(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Seconds to wait before retry ``attempt`` + 1: exponential, capped, jittered."""
    return float(min(cap, base * 2 ** max(attempt - 1, 0)) * random.uniform(0.5, 1.0))


def make_worker_id() -> str:
    """A worker's lease-holder name: ``host:pid:random``, unique per worker."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def result_json(value: Any) -> str:
    """A handler's result as JSON text; a result that isn't JSON is stored as its repr."""
    if value is None:
        return "null"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return json.dumps({"repr": repr(value)})
