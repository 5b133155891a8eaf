"""Task handlers that the fault tests run in real worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from bus.worker import Task


async def hang_first_attempt(task: Task) -> Any:
    """Hang on the first attempt (the test kills the worker), succeed on the next."""
    if task.attempt == 1:
        await asyncio.sleep(3600)  # a task that never finishes by itself, not a wait
    return {"attempt": task.attempt, "payload": task.payload}


RUNS_DIR_ENV = "BG_TEST_RUNS_DIR"
"""Folder where :func:`slow_recorded` appends one JSON line per start and end, one file per host."""


def _record(event: str, task: Task) -> None:
    host = socket.gethostname()
    line = {"event": event, "task": task.id, "attempt": task.attempt, "host": host, "pid": os.getpid()}
    line["t"] = time.time()  # the same clock as the server's: every namespace shares the kernel
    with (Path(os.environ[RUNS_DIR_ENV]) / f"{host}.jsonl").open("a") as out:
        out.write(json.dumps(line) + "\n")


async def slow_recorded(task: Task) -> Any:
    """Record the start, run ``payload["seconds"]``, record the end; the result names the host."""
    _record("start", task)
    await asyncio.sleep(float(task.payload["seconds"]))  # the work itself, not a wait for a condition
    _record("end", task)
    return {"host": socket.gethostname(), "pid": os.getpid()}
