"""The SSE feed: cursors, resume, live-only, reset, slow and gone clients, stream cap, header timeout."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient

from agents.cli.webserver import start_web
from bus.client import Bus
from bus.config import Settings
from bus.events import Event
from tests.waiting import eventually
from tests.web.conftest import read_events
from web.broadcaster import CoalescingClient, QueuedClient


async def _publish(db_url: str, *channels: str) -> list[int]:
    conn = await asyncpg.connect(db_url)
    try:
        return [
            await conn.fetchval("select bg.publish($1, jsonb_build_object('n', $2::int))", c, i)
            for i, c in enumerate(channels)
        ]
    finally:
        await conn.close()


async def test_resume_with_last_event_id_gets_exactly_the_rest_then_live(
    client: TestClient, db_url: str, settings_for
) -> None:
    ids = await _publish(db_url, "a", "a", "a")
    async with Bus.connect(settings_for(db_url), listen=False) as bus:
        events = await bus.events.read_after("0:0", ["a"])
    first = events[0].cursor
    resp = await client.get("/api/events?channels=a&after=0:0", headers={"Last-Event-ID": first})
    assert resp.status == 200
    got = await read_events(resp, 2)
    assert [e["data"]["id"] for e in got] == ids[1:]  # the header wins over ?after
    assert [e["id"] for e in got] == [e.cursor for e in events[1:]]
    assert {e["event"] for e in got} == {"a"}
    assert set(got[0]["data"]) == {"id", "channel", "payload", "created_at"}
    live = await _publish(db_url, "a")
    [after] = await read_events(resp, 1)
    assert after["data"]["id"] == live[0]
    resp.close()


async def test_without_a_cursor_only_live_events(client: TestClient, db_url: str) -> None:
    await _publish(db_url, "old")
    resp = await client.get("/api/events")
    [hello] = await read_events(resp, 1, skip=())  # from now on, what is published arrives
    assert hello["event"] == "hello"
    new = await _publish(db_url, "new")
    [event] = await read_events(resp, 1)
    assert (event["event"], event["data"]["id"]) == ("new", new[0])
    resp.close()


async def test_out_of_order_commits_resume_exactly(client: TestClient, db_url: str) -> None:
    start_conn = await asyncpg.connect(db_url)
    start = await start_conn.fetchval("select bg.current_cursor()")
    one, two = await asyncpg.connect(db_url), await asyncpg.connect(db_url)
    try:
        t1, t2 = one.transaction(), two.transaction()
        await t1.start()
        await t2.start()
        await one.fetchval("select pg_current_xact_id()")
        await two.fetchval("select pg_current_xact_id()")
        id2 = await two.fetchval("select bg.publish('ooo', '{}')")
        id1 = await one.fetchval("select bg.publish('ooo', '{}')")
        assert id2 < id1  # the later-xid transaction took the lower id
        await t2.commit()
        await t1.commit()
    finally:
        await one.close()
        await two.close()
        await start_conn.close()
    resp = await client.get(f"/api/events?channels=ooo&after={start}")
    got = await read_events(resp, 2)
    assert [e["data"]["id"] for e in got] == [id1, id2]  # delivery order is commit-safe
    resp.close()
    again = await client.get("/api/events?channels=ooo", headers={"Last-Event-ID": got[0]["id"]})
    [rest] = await read_events(again, 1)
    assert rest["data"]["id"] == id2
    again.close()


async def test_a_cursor_older_than_retention_gets_a_reset(
    client: TestClient, db_url: str, settings_for
) -> None:
    await _publish(db_url, "gone", "gone")
    async with Bus.connect(settings_for(db_url), listen=False) as bus:
        [first, _] = await bus.events.read_after("0:0", ["gone"])
        await bus.events.prune(timedelta(0))
    resp = await client.get("/api/events", headers={"Last-Event-ID": first.cursor})
    [reset] = await read_events(resp, 1)
    assert reset["event"] == "reset"
    assert "retention" in reset["data"]["reason"]
    resp.close()


def test_a_client_that_stops_reading_is_cut_off_without_blocking() -> None:
    slow, fast = QueuedClient(None, size=3), QueuedClient(None, size=3)
    for n in range(5):
        event = Event(f"1:{n}", n, "c", {}, None, datetime.now())
        slow.offer(event)  # never read
        fast.offer(event)
        if not fast.queue.empty():
            fast.queue.get_nowait()
    assert slow.overflowed.is_set()
    assert not fast.overflowed.is_set()


async def test_stream_sends_retry_and_never_5xx(client: TestClient) -> None:
    resp = await client.get("/api/events")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    first = b""
    while b"retry:" not in first:
        first += await asyncio.wait_for(resp.content.readline(), 5)
    resp.close()


async def test_the_dashboard_stream_coalesces_regions_and_keeps_the_last_change(
    client: TestClient, db_url: str
) -> None:
    resp = await client.get("/api/events?coalesce=1")
    [hello] = await read_events(resp, 1, skip=())  # from now on, what is published arrives
    assert hello["event"] == "hello"
    conn = await asyncpg.connect(db_url)
    try:
        for n in range(30):
            await conn.execute("select bg.publish('agents', jsonb_build_object('n', $1::int))", n)
        newest = await conn.fetchval(
            "select xid::text || ':' || id from bg.events order by xid desc, id desc limit 1"
        )
    finally:
        await conn.close()
    seen: list[dict] = []

    async def newest_arrived() -> bool:
        seen.extend(await read_events(resp, 1, skip=("hello", "tasks")))
        return seen[-1].get("id") == newest

    await eventually(newest_arrived, timeout=10, what="the trailing change", interval=0)
    agents = [e for e in seen if e["event"] == "agents"]
    assert len(agents) < 30  # coalesced, not one per event
    assert {e["event"] for e in seen} <= {"agents", "health", "events"}
    assert all(e["data"] == {} for e in seen)  # names only: the partial is the markup
    resp.close()


async def test_a_coalescing_client_keeps_the_changed_regions_and_the_newest_cursor() -> None:
    dashboard = CoalescingClient({"agents", "alerts"}, newest="1:0")
    for n, channel in enumerate(["agents", "agents", "other", "alerts"], start=1):
        dashboard.offer(Event(f"1:{n}", n, channel, {}, None, datetime.now()))
    dashboard.queue_changed()
    assert await asyncio.wait_for(dashboard.changes(), 5) == (
        ["agents", "alerts", "events", "health", "tasks"],
        "1:4",
    )
    assert not dashboard.changed.is_set()  # nothing new since


async def _gauge(client: TestClient | aiohttp.ClientSession, base: str = "") -> int:
    """``bgagents_sse_clients`` from ``/metrics``."""
    resp = await client.get(f"{base}/metrics")
    for line in (await resp.text()).splitlines():
        if line.startswith("bgagents_sse_clients "):
            return int(float(line.split()[1]))
    raise AssertionError("no bgagents_sse_clients in /metrics")


async def _gauge_is(client: TestClient | aiohttp.ClientSession, n: int, base: str = "") -> None:
    async def matches() -> bool:
        return await _gauge(client, base) == n

    await eventually(matches, timeout=5, what=f"bgagents_sse_clients == {n}", interval=0.1)


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """The web app served as ``bgagents web`` serves it (not the test server); yields its base URL."""
    runner = await start_web(settings)
    try:
        yield f"http://{settings.host}:{settings.port}"
    finally:
        await runner.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_client_gone_from_a_silent_channel_leaves_the_gauge_within_seconds(
    db_url: str, settings_for: Callable[..., Settings]
) -> None:
    # aiohttp's test server cancels a handler whose client left; the real server does not.
    settings = settings_for(db_url, BGAGENTS_PORT=str(_free_port()))
    async with serving(settings) as base, aiohttp.ClientSession() as session:
        quiet = await session.get(f"{base}/api/events?channels=nothing-here")
        dashboard = await session.get(f"{base}/api/events?coalesce=1&channels=nothing-here")
        for resp in (quiet, dashboard):
            [hello] = await read_events(resp, 1, skip=())
            assert hello["event"] == "hello"
        assert await _gauge(session, base) == 2
        quiet.close()  # nothing is ever written to it: only watching the connection notices
        await _gauge_is(session, 1, base)
        dashboard.close()
        await _gauge_is(session, 0, base)


async def test_beyond_max_streams_a_client_gets_429_with_retry_after(make_client) -> None:
    client = await make_client(BGAGENTS_MAX_STREAMS="2")
    open_ = [await client.get("/api/events?channels=nothing-here") for _ in range(2)]
    for resp in open_:
        assert resp.status == 200
        await read_events(resp, 1, skip=())
    refused = await client.get("/api/events")
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) > 0
    body = await refused.json()
    assert "BGAGENTS_MAX_STREAMS" in body["error"]
    assert await _gauge(client) == 2  # the refused one was never counted
    open_[0].close()
    await _gauge_is(client, 1)
    again = await client.get("/api/events?channels=nothing-here")
    assert again.status == 200
    again.close()
    open_[1].close()


BAD_CURSORS = [
    "１２:３",  # non-ASCII digits (int() would take them)
    "9223372036854775808:0",  # beyond bigint
    "1:99999999999999999999999",
    "1:",
    ":1",
    ":",
    "1:2:3",
    "-1:2",
    "abc",
]


async def test_a_malformed_after_gets_400_naming_it(client: TestClient) -> None:
    for cursor in [*BAD_CURSORS, "1\x00:2", " 1:2", "1:2 "]:  # (a header's edge spaces are not its own)
        resp = await client.get("/api/events", params={"after": cursor})
        assert resp.status == 400, (cursor, resp.status)
        body = await resp.json()
        assert "'after'" in body["error"], (cursor, body)


async def test_a_malformed_last_event_id_gets_400_naming_it(client: TestClient) -> None:
    for cursor in BAD_CURSORS:
        resp = await client.get("/api/events", headers={"Last-Event-ID": cursor.encode().decode("latin-1")})
        assert resp.status == 400, (cursor, resp.status)
        body = await resp.json()
        assert "Last-Event-ID" in body["error"], (cursor, body)


async def test_a_client_that_never_finishes_its_headers_is_closed_after_header_timeout(
    db_url: str, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(db_url, BGAGENTS_PORT=str(_free_port()), BGAGENTS_HEADER_TIMEOUT="1")
    async with serving(settings):
        reader, writer = await asyncio.open_connection(settings.host, settings.port)
        try:
            began = asyncio.get_running_loop().time()
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and nothing more
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing answered
            assert asyncio.get_running_loop().time() - began >= 0.5
        finally:
            writer.close()
        # a client that sends its request in time is served as usual
        reader, writer = await asyncio.open_connection(settings.host, settings.port)
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 ")
        finally:
            writer.close()
