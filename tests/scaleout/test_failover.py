"""Primary failover: a primary and a streaming hot standby, everything on a multi-host URL.

A worker (``bgagents worker``), the coordinator and heartbeat agents (``bgagents run``) and
the web (``bgagents web``) run against ``host=h1,h2&target_session_attrs=read-write``, while
this test enqueues and publishes as fast as the servers acknowledge, and follows the SSE
feed. Then the primary is stopped hard (``pg_ctl stop -m immediate``) and the standby is
promoted. Within 30 s everything works on the new primary: claims and completions, LISTEN
(a fresh task on an idle queue is picked up at NOTIFY speed, not at the poll interval),
leadership (the coordinator's lease is renewed there), and the SSE client, resuming by its
cursor, gets every event exactly once. Event cursors stay valid: transaction ids on the
promoted standby continue from the primary's.

With synchronous replication no acknowledged enqueue or publish is lost. Without it the
test measures what was lost and prints the window (see docs/scale-out.md). Completions are
measured in both modes and printed: ``bg.complete_tasks`` commits asynchronously by design
(a forgotten completion means the task runs again), which also lets a failover forget one.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml

from tests.integration.test_agents import Fleet
from tests.pgbouncer import free_port
from tests.replication import ReplicaPair

pytestmark = pytest.mark.timeout(300)

RECOVERY_BUDGET = 30.0
LEASE = 3.0
MONITORING: dict[str, dict[str, Any]] = {
    "coordinator": {"interval": 0.5, "lease": LEASE, "dead_after": 5.0, "heartbeat_interval": 0.5},
    "heartbeat": {"interval": 0.5, "grace": 2.0, "misses": 4, "alert_for": 2.0, "heartbeat_interval": 0.5},
}
DRIVER_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


@dataclass
class Ledger:
    """What the servers acknowledged to this test: id -> monotonic time of the acknowledgement."""

    acked: dict[int, float] = field(default_factory=dict)
    errors: int = 0
    last_error: str = ""


async def keep_calling(url: str, sql: str, ledger: Ledger, stop: asyncio.Event) -> None:
    """Run ``sql`` (returning an id) again and again, reconnecting through failures."""
    conn: asyncpg.Connection | None = None
    n = 0
    while not stop.is_set():
        try:
            if conn is None:
                conn = await asyncpg.connect(url, timeout=3)
            value = await asyncio.wait_for(conn.fetchval(sql, n), 5)
            ledger.acked[int(value)] = time.monotonic()
            n += 1
            await asyncio.sleep(0.002)  # pacing: a steady stream, not a flood
        except DRIVER_ERRORS as exc:
            ledger.errors += 1
            ledger.last_error = f"{type(exc).__name__}: {exc}"
            if conn is not None:
                conn.terminate()
                conn = None
            await asyncio.sleep(0.05)  # back off before reconnecting
    if conn is not None:
        await conn.close()


@dataclass
class SseFollower:
    """Follows ``/api/events`` from the start, reconnecting with ``Last-Event-ID``."""

    base: str
    channel: str
    ids: list[int] = field(default_factory=list)
    cursors: list[str] = field(default_factory=list)
    connects: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=15)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop.is_set():
                headers = {"Last-Event-ID": self.cursors[-1]} if self.cursors else {}
                try:
                    async with session.get(
                        f"{self.base}/api/events",
                        params={"channels": self.channel, "after": "0:0"},
                        headers=headers,
                    ) as resp:
                        if resp.status != 200:
                            await asyncio.sleep(0.2)  # back off: the web is reconnecting
                            continue
                        self.connects += 1
                        await self._read(resp)
                except (aiohttp.ClientError, TimeoutError, ConnectionError):
                    await asyncio.sleep(0.2)  # back off before resuming by cursor

    async def _read(self, resp: aiohttp.ClientResponse) -> None:
        current: dict[str, str] = {}
        async for raw in resp.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith(":"):
                continue
            if line == "":
                if current.get("event") == self.channel and "id" in current:
                    self.cursors.append(current["id"])
                    self.ids.append(int(current["id"].split(":")[1]))
                current = {}
                continue
            key, _, value = line.partition(": ")
            current[key] = value


@pytest.fixture(params=["synchronous", "asynchronous"])
def pair(request: pytest.FixtureRequest) -> Iterator[ReplicaPair]:
    cluster = ReplicaPair(synchronous=request.param == "synchronous")
    try:
        cluster.start_primary()
        cluster.psql(0, "CREATE DATABASE bg")
        cluster.start_standby()
        yield cluster
    except BaseException:
        print(f"primary log:\n{cluster.log(0)}\nstandby log:\n{cluster.log(1)}")
        raise
    finally:
        cluster.cleanup()


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        yield conn
    finally:
        await conn.close()


async def _fetch(url: str, sql: str, *args: Any) -> Any:
    """One value from a fresh connection to ``url``, or None while it can't answer."""
    try:
        async with connected(url) as conn:
            return await conn.fetchval(sql, *args)
    except DRIVER_ERRORS:
        return None


async def test_failover_to_a_promoted_standby(
    pair: ReplicaPair, cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = pair.multi_host_url()
    new_primary = pair.url(1)
    monitoring = tmp_path / "monitoring.yml"
    monitoring.write_text(yaml.safe_dump(MONITORING))
    port = free_port()
    env = {
        **cli_env,
        "DATABASE_URL": url,
        "BGAGENTS_MONITORING_FILE": str(monitoring),
        "BGAGENTS_POOL_MIN": "1",
        "BGAGENTS_CONNECT_TIMEOUT": "3",
        "BGAGENTS_PORT": str(port),
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    fleet = Fleet(env, logs)
    stop = asyncio.Event()
    loaders: list[asyncio.Task[None]] = []
    try:
        migrate = fleet.start("migrate")
        await fleet.wait(lambda: _done(migrate), 60, "bgagents migrate")
        assert migrate.returncode == 0, fleet.report()
        fleet.start("worker", "--queue", "fo", "--handler", "agents.demo:echo", "--lease", str(LEASE))
        fleet.start("worker", "--queue", "idle", "--handler", "agents.demo:echo", "--lease", str(LEASE))
        fleet.start("run", "coordinator")
        fleet.start("run", "heartbeat")
        fleet.start("web")
        base = f"http://127.0.0.1:{port}"
        await fleet.wait(
            lambda: _fetch(url, "select holder from bg.leases where role = 'coordinator'"), 30, "a leader"
        )
        follower = SseFollower(base, "fo")
        enqueued, published = Ledger(), Ledger()
        loaders = [
            asyncio.create_task(
                keep_calling(url, "select bg.enqueue('fo', jsonb_build_object('n', $1::int))", enqueued, stop)
            ),
            asyncio.create_task(
                keep_calling(
                    url, "select bg.publish('fo', jsonb_build_object('n', $1::int))", published, stop
                )
            ),
            asyncio.create_task(follower.run(stop)),
        ]
        await fleet.wait(lambda: _enough(enqueued, published, follower), 30, "load and SSE flowing")
        before = await _fetch(pair.url(0), "select count(*) from bg.tasks where status = 'done'")
        assert before, "the worker completes tasks before the failover"
        done_seen = set(await _ids(pair.url(0), "select id from bg.tasks where status = 'done'"))

        xid_seen = max(int(c.split(":")[0]) for c in follower.cursors)
        cursor_at_crash, seen_at_crash = follower.cursors[-1], len(follower.ids)
        crashed = time.monotonic()
        pair.crash_primary()
        pair.promote_standby()
        promoted = time.monotonic()
        after = await _fetch(new_primary, "select pg_current_xact_id()::text")
        # Completions that reverted: seen done on the old primary, not done on the new one (yet).
        still_done = set(await _ids(new_primary, "select id from bg.tasks where status = 'done'"))
        lost_done = sorted(done_seen - still_done)

        # --- recovery: a fresh task done, leadership renewed there, SSE resumed ---------
        probe = await fleet.wait(
            lambda: _fetch(url, "select bg.enqueue('fo', '{\"probe\": true}')"), RECOVERY_BUDGET, "an enqueue"
        )
        await fleet.wait(
            lambda: _fetch(url, "select status = 'done' from bg.tasks where id = $1", probe),
            RECOVERY_BUDGET,
            "a task claimed and completed on the new primary",
        )
        recovered = time.monotonic() - crashed
        renewed = await fleet.wait(
            lambda: _fetch(
                new_primary,
                "select lease_until > now() + interval '1 second' from bg.leases where role = 'coordinator'",
            ),
            RECOVERY_BUDGET,
            "the coordinator's lease renewed on the new primary",
        )
        assert renewed
        # LISTEN: every process listens on the new primary again, so an idle queue's task is
        # picked up at NOTIFY speed (its worker polls only every 2 s).
        latencies = []
        for _ in range(5):
            task = await _fetch(url, "select bg.enqueue('idle', '{}')")
            began = time.monotonic()
            await fleet.wait(_is_done(url, task), 10, "idle task")
            latencies.append(time.monotonic() - began)
        assert statistics.median(latencies) < 0.7, f"the idle worker seems to poll, not LISTEN: {latencies}"
        assert time.monotonic() - crashed <= RECOVERY_BUDGET + 15

        # --- stop the load; then count what the new primary kept -----------------------
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loaders[:2]), 15)
        tasks_kept = set(await _ids(new_primary, "select id from bg.tasks where queue = 'fo'"))
        events_kept = set(await _ids(new_primary, "select id from bg.events where channel = 'fo'"))
        lost_tasks = sorted(set(enqueued.acked) - tasks_kept)
        lost_events = sorted(set(published.acked) - events_kept)
        await fleet.wait(
            lambda: _fetch(
                new_primary, "select count(*) = 0 from bg.tasks where queue = 'fo' and status <> 'done'"
            ),
            60,
            "every task kept done, also those whose completion was lost",
        )
        window = _window(enqueued, published, lost_tasks, lost_events, crashed)
        with capsys.disabled():
            print(
                f"\nfailover ({pair_mode(pair)} replication): recovered in {recovered:.1f} s "
                f"(promote took {promoted - crashed:.2f} s); acknowledged then lost: "
                f"{len(lost_tasks)} of {len(enqueued.acked)} enqueues, {len(lost_events)} of "
                f"{len(published.acked)} publishes; completions seen done and reverted: "
                f"{len(lost_done)} of {len(done_seen)} (their tasks ran again); {window}; "
                f"SSE reconnects: {follower.connects - 1}; idle-task latency median "
                f"{statistics.median(latencies) * 1000:.0f} ms; first xid on the new primary {after}, "
                f"last cursor xid seen before the crash {xid_seen}"
            )
        # SSE: resumed by cursor, every kept event exactly once, in cursor order.
        await fleet.wait(
            lambda: _covers(follower, events_kept), 30, "the SSE client caught up after the failover"
        )
        loaders[2].cancel()
        kept_seen = [i for i in follower.ids if i in events_kept]
        assert len(kept_seen) == len(set(kept_seen)), "an event arrived twice over SSE"
        cursors = [tuple(map(int, c.split(":"))) for c in follower.cursors]
        assert cursors == sorted(cursors), "SSE cursors went backwards"
        # A client that was cut off at the crash resumes by its cursor on the new primary:
        # it gets exactly what the live follower got after that point.
        expected = [i for i in follower.ids[seen_at_crash:] if i in events_kept]
        resumed = SseFollower(base, "fo", cursors=[cursor_at_crash])
        resuming = asyncio.create_task(resumed.run(asyncio.Event()))
        try:
            await fleet.wait(lambda: _covers(resumed, set(expected)), 30, "a client resuming by its cursor")
        finally:
            resuming.cancel()
            await asyncio.gather(resuming, return_exceptions=True)
        assert resumed.ids[: len(expected)] == expected
        assert after is not None

        assert recovered <= RECOVERY_BUDGET, f"recovery took {recovered:.1f} s"
        if pair.synchronous:
            assert lost_tasks == [], f"synchronous replication lost acknowledged enqueues {lost_tasks[:10]}"
            assert lost_events == [], (
                f"synchronous replication lost acknowledged publishes {lost_events[:10]}"
            )
            assert set(follower.ids) <= events_kept, "SSE delivered an event the new primary does not have"
            assert int(after) > xid_seen, (
                "xids on the promoted standby must continue past every cursor handed out"
            )
    finally:
        stop.set()
        for task in loaders:
            task.cancel()
        await asyncio.gather(*loaders, return_exceptions=True)
        fleet.stop_all()


def _is_done(url: str, task: int) -> Callable[[], Awaitable[Any]]:
    return lambda: _fetch(url, "select status = 'done' from bg.tasks where id = $1", task)


def pair_mode(pair: ReplicaPair) -> str:
    return "synchronous" if pair.synchronous else "asynchronous"


async def _done(proc: Any) -> bool:
    return proc.poll() is not None


async def _enough(enqueued: Ledger, published: Ledger, follower: SseFollower) -> bool:
    return len(enqueued.acked) > 200 and len(published.acked) > 200 and len(follower.ids) > 100


async def _ids(url: str, sql: str) -> list[int]:
    async with connected(url) as conn:
        return [r[0] for r in await conn.fetch(sql)]


async def _covers(follower: SseFollower, events: set[int]) -> bool:
    return events <= set(follower.ids)


def _window(
    enqueued: Ledger, published: Ledger, lost_tasks: list[int], lost_events: list[int], crashed: float
) -> str:
    """How long before the crash the lost acknowledgements were given."""
    times = [enqueued.acked[i] for i in lost_tasks] + [published.acked[i] for i in lost_events]
    if not times:
        return "loss window 0 ms"
    first, last = 1000 * (crashed - min(times)), 1000 * (crashed - max(times))
    return f"loss window: acknowledged {first:.0f} ms to {last:.0f} ms before the crash"
