"""SharedState: JSON values by key in ``bg.shared_state``, with compare-and-set.

Every write bumps the key's version. :meth:`SharedState.compare_and_set`
writes only when the version is still the one the caller read, so two agents
updating the same key never lose each other's writes silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bus import db
from bus.errors import ConflictError, InvalidArgument

JSON = Any


@dataclass(frozen=True)
class Versioned:
    """A value with the version it had when read."""

    value: JSON
    version: int
    updated_at: datetime


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= 400:
        raise InvalidArgument("a state key is a string of 1 to 400 characters")


class SharedState:
    """Key/value state shared by every agent through PostgreSQL."""

    def __init__(self, pool: db.Pool | db.Connection) -> None:
        self._pool = pool

    async def get(self, key: str, default: JSON = None) -> JSON:
        """The value of ``key``, or ``default`` when it is not set."""
        found = await self.get_versioned(key)
        return default if found is None else found.value

    async def get_versioned(self, key: str) -> Versioned | None:
        """The value of ``key`` with its version, or None."""
        _check_key(key)
        row = await db.call(self._pool, "state_get", key)
        return None if row is None else Versioned(row["value"], row["version"], row["updated_at"])

    async def set(self, key: str, value: JSON) -> int:
        """Set ``key`` unconditionally; return its new version."""
        _check_key(key)
        version: int = await db.call(self._pool, "state_set", key, value)
        return version

    async def compare_and_set(self, key: str, value: JSON, expected_version: int | None) -> int:
        """Set ``key`` only if its version is ``expected_version`` (None: it must not exist).

        Returns the new version; raises :class:`ConflictError` when someone else
        wrote first, so the caller can re-read and try again.
        """
        _check_key(key)
        if expected_version is None:
            version = await db.call(self._pool, "state_insert_new", key, value)
        else:
            version = await db.call(self._pool, "state_cas", key, value, expected_version)
        if version is None:
            raise ConflictError(
                f"state key {key!r} changed since version {expected_version}",
                hint="read it again and retry",
            )
        return int(version)

    async def delete(self, key: str) -> bool:
        """Delete ``key``; return whether it existed."""
        _check_key(key)
        return bool(await db.call(self._pool, "state_delete", key))

    async def keys(self, prefix: str = "", limit: int = 1000) -> list[str]:
        """Keys that start with ``prefix``, in order."""
        return [r["key"] for r in await db.call(self._pool, "state_keys", prefix, limit)]
