"""Stop signals: SIGINT and SIGTERM call one stop function, the same in every long-running command."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def on_stop_signal(stop: Callable[[], None]) -> None:
    """Call ``stop`` on SIGINT or SIGTERM in the running event loop."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop)


async def wait_for_stop_signal() -> None:
    """Return at the first SIGINT or SIGTERM."""
    stopped = asyncio.Event()
    on_stop_signal(stopped.set)
    await stopped.wait()
