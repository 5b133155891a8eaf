"""The LangSmith outbox over ``bg.llm_conversations``: claim due exchanges, record each outcome.

A row is due while it is not forwarded and its ``next_attempt_at`` has come
(``sql/queries/langsmith.sql``). A claim moves ``next_attempt_at`` forward as a
lease, so several bridges never work on the same row at once, and the rows of
a bridge that died come back by themselves when the lease runs out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bus import db


async def claim(pool: db.Pool | db.Connection, limit: int, lease_s: float) -> list[dict[str, Any]]:
    """Claim up to ``limit`` due exchanges, leased for ``lease_s`` seconds, in id order."""
    rows = await db.call(pool, "langsmith_claim", limit, lease_s)
    return sorted((dict(r) for r in rows), key=lambda r: int(r["id"]))


async def forwarded(pool: db.Pool | db.Connection, conversation_id: int) -> None:
    """LangSmith accepted the exchange: it leaves the outbox."""
    await db.call(pool, "langsmith_forwarded", conversation_id)


async def failed(
    pool: db.Pool | db.Connection, conversation_id: int, error: str, backoff_base: float
) -> datetime | None:
    """Count a failed attempt and back off; returns when it is due again (None: already forwarded)."""
    retry_at: datetime | None = await db.call(pool, "langsmith_failed", conversation_id, error, backoff_base)
    return retry_at


async def release(pool: db.Pool | db.Connection, conversation_ids: Sequence[int]) -> None:
    """Hand claimed exchanges back, due now, without counting an attempt (a batch cut short)."""
    await db.call(pool, "langsmith_release", list(conversation_ids))
