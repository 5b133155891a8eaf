"""The event log against a real server: ordering, cursors, retention, faults."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from bus.client import Bus
from bus.errors import InvalidArgument
from bus.events import BEGINNING, CursorExpired, Event
from tests.waiting import signalled


@pytest.fixture
async def bus(db_url: str, settings_for) -> AsyncIterator[Bus]:
    b = await Bus.open(settings_for(db_url))
    yield b
    await b.close()


async def collect(
    bus: Bus, n: int, after: str | None, channels: list[str] | None = None, timeout: float = 15
) -> list[Event]:
    got: list[Event] = []

    async def run() -> None:
        async for event in bus.subscribe(channels, after=after):
            got.append(event)
            if len(got) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return got


async def test_sql_publish_reaches_a_subscriber_and_a_listen_session(bus: Bus, db_url: str) -> None:
    cursor = await bus.events.current_cursor()
    listener = await asyncpg.connect(db_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("bg_events", lambda *a: heard.put_nowait(a[3]))
    try:
        waiter = asyncio.create_task(collect(bus, 1, cursor, ["demo"]))
        other_app = await asyncpg.connect(db_url)
        try:
            await other_app.execute("""select bg.publish('demo', '{"from": "psql"}')""")
        finally:
            await other_app.close()
        [event] = await waiter
        assert event.channel == "demo" and event.payload == {"from": "psql"}
        assert await asyncio.wait_for(heard.get(), 5) == "demo"
    finally:
        await listener.close()


async def test_without_a_cursor_only_live_events_arrive(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    await bus.publish("old", {"n": 0})
    cursor_taken = asyncio.Event()
    current_cursor = bus.events.current_cursor

    async def signalling_current_cursor() -> str:
        cursor = await current_cursor()
        cursor_taken.set()
        return cursor

    # A subscriber without a cursor starts from bus.events.current_cursor(): publish once it has.
    monkeypatch.setattr(bus.events, "current_cursor", signalling_current_cursor)
    waiter = asyncio.create_task(collect(bus, 1, None))
    await signalled(cursor_taken, timeout=10, what="the subscriber took its starting cursor")
    await bus.publish("new", {"n": 1})
    [event] = await waiter
    assert event.channel == "new"


async def test_channel_filter_and_large_payloads(bus: Bus) -> None:
    cursor = await bus.events.current_cursor()
    big = {"blob": "x" * 20000}
    await bus.publish("skip-me", {})
    await bus.publish("big", big)
    [event] = await collect(bus, 1, cursor, ["big"])
    assert event.payload == big
    assert event.as_json()["payload"] == big and event.as_json()["id"] == event.id


async def test_commits_out_of_id_order_are_delivered_in_cursor_order(bus: Bus, db_url: str) -> None:
    start = await bus.events.current_cursor()
    first, second = await asyncpg.connect(db_url), await asyncpg.connect(db_url)
    try:
        tx1, tx2 = first.transaction(), second.transaction()
        await tx1.start()
        await tx2.start()
        id1 = await first.fetchval("select bg.publish('order', '{\"n\": 1}')")
        id2 = await second.fetchval("select bg.publish('order', '{\"n\": 2}')")
        assert id1 < id2
        await tx2.commit()  # the higher id commits first
        # Not deliverable yet: the lower xid is still in progress, so reading
        # now and moving the cursor past id2 would lose id1 forever.
        assert await bus.events.read_after(start, ["order"]) == []
        await tx1.commit()
        events = await bus.events.read_after(start, ["order"])
        assert [e.id for e in events] == [id1, id2]
    finally:
        await first.close()
        await second.close()


async def test_eight_concurrent_publishers_exactly_once_and_resume_from_any_cursor(
    bus: Bus, db_url: str
) -> None:
    start = await bus.events.current_cursor()
    per_publisher = 40
    total = 8 * per_publisher
    subscriber = asyncio.create_task(collect(bus, total, start, ["race"], timeout=60))
    conns = [await asyncpg.connect(db_url) for _ in range(8)]

    async def publisher(conn: asyncpg.Connection, index: int) -> list[int]:
        ids = []
        rng = random.Random(index)
        for n in range(per_publisher):
            async with conn.transaction():
                # Take the transaction id first, then the event id later: xid
                # order, id order and commit order all disagree.
                await conn.fetchval("select pg_current_xact_id()")
                await asyncio.sleep(rng.random() * 0.005)  # random jitter for interleavings, not a wait
                ids.append(
                    await conn.fetchval(
                        "select bg.publish('race', jsonb_build_object('p', $1::int, 'n', $2::int))", index, n
                    )
                )
                await asyncio.sleep(rng.random() * 0.01)  # hold ids so commits interleave
        return ids

    try:
        published = await asyncio.gather(*(publisher(c, i) for i, c in enumerate(conns)))
    finally:
        for c in conns:
            await c.close()
    delivered = await subscriber
    all_ids = sorted(i for ids in published for i in ids)
    assert sorted(e.id for e in delivered) == all_ids  # every event, exactly once
    ids_in_order = [e.id for e in delivered]
    assert ids_in_order != sorted(ids_in_order), "ids never landed out of order; the test proves nothing"
    for k in range(0, total, 37):
        rest = await bus.events.read_after(delivered[k].cursor, ["race"], limit=total)
        assert [e.id for e in rest] == ids_in_order[k + 1 :]


async def test_expired_cursor_gets_a_clear_signal(bus: Bus, db_url: str) -> None:
    cursor = await bus.events.current_cursor()
    await bus.publish("gone", {})
    await bus.publish("gone", {})
    [first, _] = await bus.events.read_after(cursor, ["gone"])
    assert await bus.events.prune(timedelta(0)) >= 2
    with pytest.raises(CursorExpired, match="older than the event retention"):
        await bus.events.read_after(first.cursor)
    with pytest.raises(CursorExpired):
        await collect(bus, 1, first.cursor)
    assert await bus.events.read_after(BEGINNING) == []  # the beginning never expires
    conn = await asyncpg.connect(db_url)
    try:
        with pytest.raises(asyncpg.PostgresError) as err:
            await conn.fetch("select * from bg.events_after($1)", first.cursor)
        assert err.value.sqlstate == "BG410" and "bg.current_cursor()" in err.value.hint
    finally:
        await conn.close()


async def test_malformed_cursor_and_channel_are_refused_with_a_hint(bus: Bus) -> None:
    with pytest.raises(InvalidArgument) as err:
        await bus.events.read_after("not-a-cursor")
    assert err.value.hint and "1234:56" in err.value.hint
    with pytest.raises(InvalidArgument) as err:
        await bus.publish("bad channel!", {})
    assert err.value.hint


async def test_terminated_listen_connection_loses_and_duplicates_nothing(bus: Bus, db_url: str) -> None:
    start = await bus.events.current_cursor()
    total = 60
    reconnected = asyncio.Event()
    bus.notifier.on_reconnect(reconnected.set)
    subscriber = asyncio.create_task(collect(bus, total, start, ["heal"], timeout=60))
    admin = await asyncpg.connect(db_url)
    try:
        for n in range(total):
            await bus.publish("heal", {"n": n})
            if n in (15, 40):
                assert bus.notifier.server_pid is not None
                await admin.execute("select pg_terminate_backend($1)", bus.notifier.server_pid)
    finally:
        await admin.close()
    delivered = await subscriber
    assert [e.payload["n"] for e in delivered] == list(range(total))
    await signalled(reconnected, timeout=15, what="the notifier reconnected")
    assert bus.notifier.reconnects >= 1


class SilencingProxy:
    """A TCP relay to the test server whose open connections can go silent.

    A silenced link stays open but carries nothing, like a dead NAT entry or a
    half-open connection: only the notifier's self-ping can notice it.
    Connections made later relay normally.
    """

    def __init__(self, url: str) -> None:
        self._target = urlsplit(url)
        self._silenced: set[asyncio.StreamWriter] = set()
        self._open: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        """Listen on a free local port; returns the URL that connects through it."""
        self._server = await asyncio.start_server(self._relay_client, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        user = self._target.username or "postgres"
        password = f":{self._target.password}" if self._target.password else ""
        return f"postgresql://{user}{password}@127.0.0.1:{port}{self._target.path}?sslmode=disable"

    def silence(self) -> None:
        """From now on, the connections open so far carry nothing either way."""
        self._silenced.update(self._open)

    async def close(self) -> None:
        for writer in self._open:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _open_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        socket_dir = parse_qs(self._target.query).get("host", [""])[0]
        if socket_dir.startswith("/"):
            port = self._target.port or 5432
            return await asyncio.open_unix_connection(f"{socket_dir}/.s.PGSQL.{port}")
        return await asyncio.open_connection(self._target.hostname, self._target.port or 5432)

    async def _relay_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await self._open_target()
        self._open += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer, writer),
            self._pipe(up_reader, writer, writer),
            return_exceptions=True,
        )
        for w in (writer, up_writer):
            w.close()

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, client: asyncio.StreamWriter
    ) -> None:
        while data := await source.read(65536):
            if client in self._silenced:
                continue  # swallowed: the link looks open and says nothing
            sink.write(data)
            await sink.drain()


async def test_notifier_notices_a_silent_connection_and_reconnects(db_url: str, settings_for) -> None:
    from bus.notifier import Notifier

    proxy = SilencingProxy(db_url)
    through_proxy = await proxy.start()
    notifier = Notifier(settings_for(db_url), through_proxy, ping_interval=0.2, ping_timeout=0.3)
    await notifier.start()
    reconnected = asyncio.Event()
    notifier.on_reconnect(reconnected.set)
    try:
        first_pid = notifier.server_pid
        proxy.silence()
        await signalled(reconnected, timeout=10, what="the silent connection noticed and replaced")
        assert notifier.reconnects >= 1
        assert notifier.connected.is_set() or await asyncio.wait_for(notifier.connected.wait(), 5)
        assert notifier.server_pid not in (None, first_pid)
    finally:
        await notifier.stop()
        await proxy.close()
