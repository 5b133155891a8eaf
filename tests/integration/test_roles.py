"""The roles bg_reader and bg_writer have what an app needs, and no more."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import with_user


@pytest.fixture
async def role_urls(db_url: str) -> AsyncIterator[dict[str, str]]:
    admin = await asyncpg.connect(db_url)
    names = {"reader": "bg_test_reader_app", "writer": "bg_test_writer_app"}
    try:
        for kind, name in names.items():
            await admin.execute(f"DROP ROLE IF EXISTS {name}")
            await admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD 'app' IN ROLE bg_{kind}")
        yield {kind: with_user(db_url, name, "app") for kind, name in names.items()}
    finally:
        for name in names.values():
            await admin.execute(f"DROP ROLE IF EXISTS {name}")
        await admin.close()


async def test_a_writer_enqueues_publishes_and_schedules(role_urls: dict[str, str]) -> None:
    conn = await asyncpg.connect(role_urls["writer"])
    try:
        assert await conn.fetchval("select bg.enqueue('app', '{}')") > 0
        assert await conn.fetchval("select bg.publish('app', '{}')") > 0
        await conn.fetchval("select bg.add_schedule('app-tick', '@hourly', 'app')")
        rows = await conn.fetch("select * from bg.events_after('0:0')")
        assert [r["channel"] for r in rows] == ["app"]
        assert await conn.fetchval("select bg.cancel_task(1)") in ("cancelled", None)
    finally:
        await conn.close()


async def test_a_reader_reads_but_cannot_write(role_urls: dict[str, str]) -> None:
    conn = await asyncpg.connect(role_urls["reader"])
    try:
        await conn.fetch("select * from bg.events_after('0:0')")
        await conn.fetch("select * from bg.queue_stats")
        assert await conn.fetchval("select bg.current_cursor()")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("select bg.enqueue('app', '{}')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("select bg.publish('app', '{}')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("delete from bg.shared_state")
    finally:
        await conn.close()
