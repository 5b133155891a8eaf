"""Waiting in tests: poll a condition until it holds, and fail saying what never happened.

``eventually`` is for async tests, ``wait_until`` its twin for code that drives
subprocesses synchronously, and ``signalled`` awaits an ``asyncio.Event`` with
the same kind of failure. Both return the probe's first truthy value, so a
probe can hand back the row or object it found. On timeout they raise
``AssertionError`` naming ``what`` and the probe's last value, plus ``detail()``
when given (a process log, say). Prefer awaiting an event or signal where the
code offers one; poll only state that nobody announces.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")

Detail = Callable[[], str]


def _failure(what: str, timeout: float, last: object, detail: Detail | None) -> AssertionError:
    message = f"not within {timeout}s: {what} (last: {last!r})"
    if detail is not None:
        message += "\n" + detail()
    return AssertionError(message)


@overload
async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    what: str,
    interval: float = ...,
    detail: Detail | None = ...,
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = ...,
    detail: Detail | None = ...,
) -> T: ...


async def eventually(
    probe: Callable[[], object],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    detail: Detail | None = None,
) -> object:
    """Call ``probe`` (sync or async) every ``interval`` s until it returns something truthy.

    Returns that value; raises ``AssertionError`` after ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise _failure(what, timeout, value, detail)
        await asyncio.sleep(interval)  # the poll interval: the one place async tests wait


async def signalled(event: asyncio.Event, *, timeout: float, what: str) -> None:
    """Wait for ``event`` to be set; raises ``AssertionError`` naming ``what`` after ``timeout`` s."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        raise AssertionError(f"not within {timeout}s: {what}") from None


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    detail: Detail | None = None,
) -> T:
    """Blocking twin of :func:`eventually`, for tests that drive subprocesses synchronously."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value  # truthy, so not None
        if time.monotonic() >= deadline:
            raise _failure(what, timeout, value, detail)
        time.sleep(interval)  # the poll interval: the one place sync tests wait
