"""SharedState against a real server, including compare-and-set under concurrency."""

from __future__ import annotations

import asyncio

import pytest

from bus import db, health
from bus.errors import ConflictError, InvalidArgument
from bus.state import SharedState


@pytest.fixture
async def pool(db_url: str, settings_for):
    p = await db.create_pool(settings_for(db_url, BGAGENTS_POOL_MIN="2", BGAGENTS_POOL_MAX="10"))
    yield p
    await p.close()


async def test_get_set_delete(pool) -> None:
    state = SharedState(pool)
    assert await state.get("missing", default="fallback") == "fallback"
    assert await state.set("config", {"a": [1, 2]}) == 1
    assert await state.set("config", {"a": [3]}) == 2
    assert await state.get("config") == {"a": [3]}
    assert await state.keys("con") == ["config"]
    assert await state.delete("config") is True
    assert await state.delete("config") is False
    assert await state.get("config") is None


async def test_compare_and_set_refuses_a_stale_version(pool) -> None:
    state = SharedState(pool)
    assert await state.compare_and_set("leader", "a", None) == 1
    with pytest.raises(ConflictError):
        await state.compare_and_set("leader", "b", None)
    assert await state.compare_and_set("leader", "b", 1) == 2
    with pytest.raises(ConflictError, match="changed since version 1"):
        await state.compare_and_set("leader", "c", 1)
    assert await state.get("leader") == "b"


async def test_concurrent_compare_and_set_loses_no_update(pool) -> None:
    state = SharedState(pool)
    await state.set("counter", 0)
    workers, increments = 8, 15
    conflicts = 0

    async def bump() -> None:
        nonlocal conflicts
        for _ in range(increments):
            while True:
                current = await state.get_versioned("counter")
                assert current is not None
                try:
                    await state.compare_and_set("counter", current.value + 1, current.version)
                    break
                except ConflictError:
                    conflicts += 1

    await asyncio.gather(*(bump() for _ in range(workers)))
    assert await state.get("counter") == workers * increments
    assert conflicts > 0, "the workers never raced; the test proves nothing"


async def test_bad_key_is_refused(pool) -> None:
    with pytest.raises(InvalidArgument):
        await SharedState(pool).set("", 1)


async def test_statistics(pool) -> None:
    """One call gives every figure: transactions per second are averaged since the database's
    statistics were reset (or the server started), so there is no second sample to wait for."""
    first = await health.statistics(pool, top_tables=100)
    assert first["transactions_per_second"] is not None
    assert first["transactions_per_second"] >= 0
    assert first["server_version"]
    assert first["database_size_bytes"] > 0
    assert first["connections"] >= 1
    tables = [t["table"] for t in first["largest_tables"]]
    assert "bg.shared_state" in tables
    second = await health.statistics(pool)
    assert len(second["largest_tables"]) == min(10, len(tables))
