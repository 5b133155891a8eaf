"""The durable event log: publish, read after a cursor, and subscribe.

**Ordering.** Commit order is not id order: a transaction can take id 9 and
commit after the one that took id 10, so "the last id I saw" would skip 9. We
order events by ``(xid, id)``, where ``xid`` is the publishing transaction's
id, and a reader only reads rows whose ``xid`` is below its snapshot's
``xmin``. Every transaction below ``xmin`` has finished, and every transaction
that starts later gets a larger xid, so once a reader has passed a position no
row can ever appear before it: delivery is gap-free and duplicate-free, in one
stable order, across reconnects. The cursor is ``"xid:id"``.

We chose this over the alternatives in DESIGN.md because publishing stays a
plain insert (any app can do it, and nothing is serialised at commit),
and reads are one index range scan. The price is the **stall**: while any
transaction in the cluster holds an xid (it has written and not finished), or
a prepared transaction exists, events from transactions that started after it
wait. A short transaction delays delivery by its own length; a transaction
left open delays it until it ends, so keep write transactions short and watch
``pg_stat_activity`` for ``idle in transaction``. Read-only sessions never
stall it. While committed events wait beyond the horizon, subscribers poll
quickly (``bg.events_pending()``) instead of waiting for the next NOTIFY.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bus import db
from bus.errors import CursorExpired, DatabaseError, DatabaseUnavailable, InvalidArgument
from bus.notifier import Notifier
from bus.waiting import wait_event

logger = logging.getLogger(__name__)

__all__ = ["BEGINNING", "CursorExpired", "Event", "Events", "parse_cursor"]

BEGINNING = "0:0"
"""The cursor before the oldest retained event."""

EXPIRED_SQLSTATE = "BG410"
"""What ``bg.events_after`` raises for a cursor older than retention."""


@dataclass(frozen=True)
class Event:
    """One event with its position in delivery order."""

    cursor: str
    id: int
    channel: str
    payload: Any
    source: str | None
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        """The event as the SSE ``data:`` carries it."""
        return {
            "id": self.id,
            "channel": self.channel,
            "payload": self.payload,
            "created_at": self.created_at.isoformat(),
        }


class Events:
    """Publish to and read from ``bg.events``."""

    def __init__(self, pool: db.Pool, notifier: Notifier | None = None) -> None:
        self._pool = pool
        self._notifier = notifier

    async def publish(
        self,
        channel: str,
        payload: Any = None,
        *,
        source: str | None = None,
        conn: db.Connection | None = None,
    ) -> int:
        """Append one event (inside ``conn``'s transaction if given); returns its id."""
        event_id: int = await db.call(conn or self._pool, "events_publish", channel, payload or {}, source)
        return event_id

    async def publish_many(
        self, events: Sequence[tuple[str, Any]], *, source: str | None = None
    ) -> list[int]:
        """Append several ``(channel, payload)`` events in one statement."""
        try:
            rows = await db.call(
                self._pool,
                "events_publish_many",
                [c for c, _ in events],
                [p or {} for _, p in events],
                source,
            )
        except InvalidArgument as exc:
            if exc.__cause__ is None or getattr(exc.__cause__, "constraint_name", None) is None:
                raise
            raise InvalidArgument(f"invalid channel in batch: {exc.__cause__}") from exc.__cause__
        return [r["id"] for r in rows]

    async def current_cursor(self) -> str:
        """The cursor of the newest deliverable event: "now"."""
        cursor: str = await db.call(self._pool, "events_current_cursor")
        return cursor

    async def read_after(
        self, cursor: str, channels: Sequence[str] | None = None, limit: int = 1000
    ) -> list[Event]:
        """Up to ``limit`` events after ``cursor``, in delivery order."""
        try:
            rows = await db.call(
                self._pool, "events_after", cursor, list(channels) if channels else None, limit
            )
        except DatabaseError as exc:
            if exc.sqlstate == EXPIRED_SQLSTATE:
                raise CursorExpired(exc.message, hint=exc.hint) from exc.__cause__
            raise
        return [Event(**dict(r)) for r in rows]

    async def prune(self, older_than: timedelta) -> int:
        """Delete events older than ``older_than``; returns how many."""
        deleted: int = await db.call(self._pool, "events_prune", older_than)
        return deleted

    async def subscribe(
        self,
        channels: Sequence[str] | None = None,
        after: str | None = None,
        *,
        batch: int = 500,
        poll_interval: float = 2.0,
    ) -> AsyncIterator[Event]:
        """Yield every event after ``after`` (None: from now on), then live ones.

        Raises :class:`CursorExpired` when ``after`` is older than retention.
        """
        wake = asyncio.Event()
        unsubscribe = []
        if self._notifier is not None:
            unsubscribe.append(self._notifier.listen("bg_events", lambda _p: wake.set()))
            unsubscribe.append(self._notifier.on_reconnect(wake.set))
        cursor = after if after is not None else await self.current_cursor()
        quick = 0.002
        retry = 0.1
        try:
            while True:
                wake.clear()
                try:
                    found = await self.read_after(cursor, channels, batch)
                    pending = len(found) < batch and await db.call(self._pool, "events_pending")
                except DatabaseUnavailable as exc:
                    # The server restarted or the connection broke: the cursor
                    # says where we were, so wait and read again.
                    logger.warning("subscriber: %s; retrying in %.1fs", exc, retry)
                    await asyncio.sleep(retry)
                    retry = min(retry * 2, 5.0)
                    continue
                retry = 0.1
                for event in found:
                    cursor = event.cursor
                    yield event
                if len(found) == batch:
                    continue
                if pending:
                    timeout, quick = quick, min(quick * 2, 0.1)
                else:
                    timeout, quick = poll_interval, 0.002
                await wait_event(wake, timeout)
        finally:
            for undo in unsubscribe:
                undo()


BIGINT_MAX = 2**63 - 1
"""Both halves of a cursor fit PostgreSQL's ``bigint``."""


def parse_cursor(cursor: str) -> tuple[int, int]:
    """Check a cursor's shape in Python (the SQL functions check it too).

    Only ASCII digits count (``int()`` would take ``'１２'``), without a leading
    zero, and both halves must fit a ``bigint``; anything else is an
    :class:`InvalidArgument`.
    """
    xid, sep, event_id = cursor.partition(":")
    if not sep or not _is_bigint(xid) or not _is_bigint(event_id):
        shown = cursor if len(cursor) <= 60 else cursor[:57] + "..."
        raise InvalidArgument(f"malformed event cursor {shown!r}", hint="a cursor looks like '1234:56'")
    return int(xid), int(event_id)


def _is_bigint(digits: str) -> bool:
    """ASCII digits without a leading zero (PostgreSQL reads ``010`` as octal ``xid8``), within bigint."""
    return (
        0 < len(digits) <= 19
        and digits.isascii()
        and digits.isdigit()
        and (digits == "0" or digits[0] != "0")
        and int(digits) <= BIGINT_MAX
    )
