"""One LISTEN connection per process, shared by every consumer in it.

NOTIFY is only a hint that rows changed; the tables are the truth, so a lost
notification costs latency, never data. The notifier keeps its connection
outside the pool (never through PgBouncer's transaction mode) and heals it:
about every ``ping_interval`` seconds it NOTIFYs itself, and when that doesn't
come back within ``ping_timeout`` (or the connection drops) it reconnects with
backoff, LISTENs again and runs the reconnect callbacks so that consumers catch
up from the tables. Callbacks never raise into the notifier: errors are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

import asyncpg

from bus import db
from bus.config import Settings
from bus.errors import BgError
from bus.waiting import wait_event

logger = logging.getLogger(__name__)

Callback = Callable[[str], None]


class Notifier:
    """Topic-to-callbacks dispatch over one self-healing LISTEN connection."""

    def __init__(
        self,
        settings: Settings,
        url: str | None = None,
        *,
        ping_interval: float = 10.0,
        ping_timeout: float = 5.0,
        max_backoff: float = 5.0,
    ) -> None:
        self._settings = settings
        self._url = url
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._max_backoff = max_backoff
        self._callbacks: dict[str, set[Callback]] = {}
        self._reconnect_callbacks: set[Callable[[], None]] = set()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._ping_channel = f"bg_ping_{secrets.token_hex(6)}"
        self._pong = asyncio.Event()
        self._conn_lock = asyncio.Lock()  # asyncpg runs one operation at a time per connection
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()
        self.reconnects = 0

    # --- consumers ------------------------------------------------------------------

    def listen(self, channel: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(payload)`` on each NOTIFY of ``channel``; returns an unsubscribe."""
        first = channel not in self._callbacks
        self._callbacks.setdefault(channel, set()).add(callback)
        if first and self._conn is not None:
            task = asyncio.ensure_future(self._add_listener(self._conn, channel))
            task.add_done_callback(_log_failure)

        def unsubscribe() -> None:
            self._callbacks.get(channel, set()).discard(callback)

        return unsubscribe

    def on_reconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after every (re)connect, so its owner catches up."""
        self._reconnect_callbacks.add(callback)
        return lambda: self._reconnect_callbacks.discard(callback)

    @property
    def server_pid(self) -> int | None:
        """The server process of the LISTEN connection (None while disconnected)."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else conn.get_server_pid()

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and keep the connection healthy in the background (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="bgagents-notifier")
        waiter = asyncio.ensure_future(self.connected.wait())
        done, _ = await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            waiter.cancel()
            self._task.result()  # re-raise why it could not connect

    async def stop(self) -> None:
        """Close the connection and stop healing it (idempotent)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()

    async def __aenter__(self) -> Notifier:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- internals ------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        first = True
        while True:
            try:
                await self._connect()
            except BgError:
                if first:
                    raise  # the caller of start() sees why
                logger.warning("notifier: reconnect failed; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if not first:
                self.reconnects += 1
                logger.info("notifier: reconnected and listening again")
            first = False
            backoff = 0.1
            self.connected.set()
            self._fire_reconnect()
            await self._watch()
            self.connected.clear()
            await self._close()

    async def _connect(self) -> None:
        conn = await db.connect(self._settings, self._url or db.listen_url(self._settings))
        self._lost.clear()
        conn.add_termination_listener(lambda _conn: self._lost.set())
        async with self._conn_lock:
            # Set first: a listen() from now on queues its own LISTEN behind this lock.
            self._conn = conn
            try:
                await conn.add_listener(self._ping_channel, self._on_ping)
                for channel in list(self._callbacks):
                    await conn.add_listener(channel, self._dispatch)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                self._conn = None
                await conn.close()
                raise BgError(f"notifier could not LISTEN: {exc}") from exc

    async def _add_listener(self, conn: asyncpg.Connection, channel: str) -> None:
        async with self._conn_lock:
            current = self._conn
            if current is None or current is not conn:
                return  # reconnected meanwhile: _connect listened on every channel
            try:
                await current.add_listener(channel, self._dispatch)
            except (asyncpg.InterfaceError, asyncpg.PostgresError, OSError) as exc:
                # The connection is failing; the watchdog reconnects and LISTENs again.
                logger.warning("notifier: LISTEN %s failed: %s", channel, exc)
                self._lost.set()

    async def _watch(self) -> None:
        """Return when the connection is lost or stops answering pings."""
        assert self._conn is not None
        while True:
            lost = asyncio.ensure_future(self._lost.wait())
            done, _ = await asyncio.wait({lost}, timeout=self._ping_interval)
            if done:
                logger.warning("notifier: LISTEN connection lost")
                return
            lost.cancel()
            if not await self._ping():
                logger.warning("notifier: self-ping unanswered; reconnecting")
                return

    async def _ping(self) -> bool:
        assert self._conn is not None
        self._pong.clear()
        try:
            async with self._conn_lock:
                await asyncio.wait_for(
                    db.run(self._conn, "notifier_ping", self._ping_channel),
                    timeout=self._ping_timeout,
                )
            if not await wait_event(self._pong, self._ping_timeout):
                return False
        except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            return False
        return True

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=2)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                conn.terminate()

    def _on_ping(self, *args: Any) -> None:
        self._pong.set()

    def _dispatch(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        for callback in list(self._callbacks.get(channel, ())):
            try:
                callback(payload)
            except Exception:
                logger.exception("notifier: callback for %s failed", channel)

    def _fire_reconnect(self) -> None:
        for callback in list(self._reconnect_callbacks):
            try:
                callback()
            except Exception:
                logger.exception("notifier: reconnect callback failed")


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("notifier: LISTEN failed: %s", task.exception())
