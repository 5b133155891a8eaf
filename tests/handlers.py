"""Task handlers that the fault tests run in real worker processes."""

from __future__ import annotations

import asyncio
from typing import Any

from bus.worker import Task


async def hang_first_attempt(task: Task) -> Any:
    """Hang on the first attempt (the test kills the worker), succeed on the next."""
    if task.attempt == 1:
        await asyncio.sleep(3600)  # a task that never finishes by itself, not a wait
    return {"attempt": task.attempt, "payload": task.payload}
