"""Built-in demo handlers, so the README's examples run as written."""

from __future__ import annotations

from typing import Any

from bus.worker import Task


async def echo(task: Task) -> Any:
    """Return the task's payload as its result."""
    return task.payload
