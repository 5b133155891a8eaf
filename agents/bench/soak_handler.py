"""The soak benchmark's task handler (``--handler agents.bench.soak_handler:handle``).

Each task's payload says how it behaves, so the audit knows what to expect:
``ok`` succeeds at once, ``flaky`` fails its first attempt and then succeeds,
``doomed`` fails every attempt and ends ``failed`` after its retries.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bus.task import Task

MODES = ("ok", "flaky", "doomed")


class PlannedFailure(RuntimeError):
    """A failure the soak planned, so that retries happen."""


async def handle(task: Task) -> dict[str, Any]:
    """Work for ``work_s`` seconds, then succeed or fail as ``mode`` says."""
    payload = task.payload if isinstance(task.payload, dict) else {}
    await asyncio.sleep(float(payload.get("work_s", 0.02)))
    mode = payload.get("mode", "ok")
    if mode == "doomed" or (mode == "flaky" and task.attempt == 1):
        raise PlannedFailure(f"planned failure ({mode}, attempt {task.attempt})")
    return {"n": payload.get("n"), "attempt": task.attempt}
