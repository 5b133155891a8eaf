"""The task queue against a real server: workers, retries, limits, cancellation, schedules."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from bus import db, schedules
from bus.client import Bus
from bus.errors import InvalidArgument, NotFound
from bus.queue import Options, TaskCancelled, TaskFailed
from bus.waker import QueueWaker
from bus.worker import Task, Worker, WorkerConfig, backoff_delay
from tests.integration.db_roles import login_url, test_logins
from tests.waiting import eventually

__all__ = ["test_logins"]  # the session fixture, imported so pytest finds it

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(params=["superuser", "bg_runtime"])
async def bus(
    request: pytest.FixtureRequest, db_url: str, settings_for: Callable[..., Any], test_logins: dict[str, str]
) -> AsyncIterator[Bus]:
    """A bus as the test server's superuser, and again as a login in bg_runtime (what agents get)."""
    url = db_url if request.param == "superuser" else login_url(db_url, test_logins, "runtime")
    b = await Bus.open(settings_for(url))
    yield b
    await b.close()


@asynccontextmanager
async def running(*workers: Worker, grace: float = 5.0) -> AsyncIterator[None]:
    """Run ``workers`` for the block; always stop them and wait for them to exit."""
    runs = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield
    finally:
        for w in workers:
            w.stop(grace)
        await asyncio.wait_for(asyncio.gather(*runs), timeout=grace + 10)


async def status_of(bus: Bus, task_id: int) -> str:
    return str((await bus.queue.get(task_id))["status"])


async def all_done(bus: Bus, ids: list[int]) -> bool:
    return all([await status_of(bus, t) == "done" for t in ids])


async def has_status(bus: Bus, task_id: int, status: str, attempts: int | None = None) -> bool:
    row = await bus.queue.get(task_id)
    return row["status"] == status and (attempts is None or row["attempts"] == attempts)


# --- retries and backoff ----------------------------------------------------------------


async def test_a_flaky_handler_is_retried_until_it_succeeds(bus: Bus) -> None:
    seen: list[int] = []

    async def flaky(task: Task) -> dict[str, int]:
        seen.append(task.attempt)
        if task.attempt < 3:
            raise RuntimeError(f"flaky on attempt {task.attempt}")
        return {"n": task.payload["n"]}

    task_id = await bus.queue.enqueue("retry", {"n": 7})
    async with running(bus.worker("retry", flaky, backoff_base=0.05)):
        assert await bus.queue.result(task_id, timeout=10) == {"n": 7}
    row = await bus.queue.get(task_id)
    assert row["status"] == "done"
    assert row["attempts"] == 3
    assert seen == [1, 2, 3]


def test_backoff_delay_is_exponential_capped_and_jittered() -> None:
    for attempt in range(1, 12):
        ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
        samples = [backoff_delay(attempt, base=0.5, cap=30.0) for _ in range(300)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples), (attempt, min(samples), max(samples))
        assert len(set(samples)) > 1, "no jitter"
    assert backoff_delay(1, base=1.0) <= 1.0
    assert backoff_delay(3, base=1.0) >= 2.0  # 4 s halved at worst: grows with the attempt
    assert backoff_delay(100, base=1.0, cap=10.0) <= 10.0


def test_worker_config_has_defaults_and_refuses_empty_slots() -> None:
    config = WorkerConfig()
    assert (config.concurrency, config.batch, config.lease, config.poll_interval) == (10, 10, 30.0, 2.0)
    with pytest.raises(ValueError, match="at least 1"):
        WorkerConfig(concurrency=0)
    with pytest.raises(ValueError, match="at least 1"):
        WorkerConfig(batch=0)


async def test_bus_worker_overrides_fields_of_the_given_config(bus: Bus) -> None:
    async def handler(task: Task) -> None:
        return None

    worker = bus.worker("cfg", handler, WorkerConfig(concurrency=3, lease=5.0), batch=2)
    assert (worker.config.concurrency, worker.config.batch, worker.config.lease) == (3, 2, 5.0)
    assert bus.worker("cfg", handler).config == WorkerConfig()
    with pytest.raises(TypeError):
        bus.worker("cfg", handler, no_such_setting=1)


async def test_a_notify_wakes_one_idle_waiter_and_a_due_time_wakes_them_all() -> None:
    waker = QueueWaker()
    waiters = [asyncio.create_task(waker.wait(10)) for _ in range(3)]
    # Not a wait for time to pass: a yield of exactly one loop turn, in which each new task
    # runs up to its first suspension, and that is where QueueWaker.wait registers it as idle.
    await asyncio.sleep(0)
    waker.on_notify("q")
    done, pending = await asyncio.wait(waiters, timeout=1, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and len(pending) == 2
    waker.on_notify(f"q@{time.time() + 0.2}")  # a delayed task: everyone recomputes its sleep
    results = await asyncio.wait_for(asyncio.gather(*pending), 5)
    assert results == [False, False]  # woken early to recompute, not yet due
    assert await asyncio.wait_for(waker.wait(10), 5) is True  # then woken when it falls due
    assert waker.next_due is None


async def test_each_bus_wakes_its_own_workers(db_url: str, settings_for: Callable[..., Any]) -> None:
    """Wakers belong to a Bus, not to the process: two buses each get theirs."""
    async with Bus.connect(settings_for(db_url)) as one, Bus.connect(settings_for(db_url)) as two:
        assert one.wakers.get("q") is one.wakers.get("q")
        assert one.wakers.get("q") is not two.wakers.get("q")


async def test_a_failed_attempt_is_rescheduled_by_the_backoff_delay(bus: Bus) -> None:
    async def always_fails(task: Task) -> None:
        raise RuntimeError("nope")

    # base 10 s: the first retry is due 5-10 s after the failure.
    task_id = await bus.queue.enqueue("backoff", max_attempts=3)
    async with running(bus.worker("backoff", always_fails, backoff_base=10.0), grace=0.1):
        await eventually(
            lambda: has_status(bus, task_id, "queued", attempts=1), timeout=10, what="first failure"
        )
        due_in = await bus.pool.fetchval(
            "SELECT extract(epoch FROM run_at - now())::float8 FROM bg.tasks WHERE id = $1", task_id
        )
    assert 4.5 <= due_in <= 10.0
    assert await status_of(bus, task_id) == "queued"  # not retried early


async def test_retries_wait_longer_after_each_failure(bus: Bus) -> None:
    starts: list[float] = []

    async def always_fails(task: Task) -> None:
        starts.append(time.monotonic())
        raise RuntimeError("nope")

    base = 0.2
    task_id = await bus.queue.enqueue("backoff", max_attempts=4)
    async with running(bus.worker("backoff", always_fails, backoff_base=base, poll_interval=30)):
        await eventually(lambda: has_status(bus, task_id, "failed"), timeout=5, what="all 4 attempts")
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 3
    for attempt, gap in enumerate(gaps, start=1):
        ceiling = base * 2 ** (attempt - 1)
        # Never before the delay's floor; soon after its ceiling (the worker wakes at run_at).
        assert ceiling / 2 - 0.01 <= gap <= ceiling + 0.5, (attempt, gap)


# --- dead letter and manual retry -------------------------------------------------------


async def test_a_task_that_keeps_failing_ends_in_the_dead_letter(bus: Bus) -> None:
    async def explode(task: Task) -> None:
        raise ValueError(f"boom {task.attempt}")

    task_id = await bus.queue.enqueue("dead", max_attempts=3)
    async with running(bus.worker("dead", explode, backoff_base=0.05)):
        with pytest.raises(TaskFailed, match="after 3 attempts: ValueError: boom 3"):
            await bus.queue.result(task_id, timeout=10)
    row = await bus.queue.get(task_id)
    assert row["status"] == "failed"
    assert row["attempts"] == 3
    assert row["finished_at"] is not None
    assert row["last_error"] == "ValueError: boom 3"
    assert "Traceback" in row["last_traceback"]
    assert "in explode" in row["last_traceback"]
    assert "ValueError: boom 3" in row["last_traceback"]
    assert [t["id"] for t in await bus.queue.list_tasks("dead", "failed")] == [task_id]


async def test_failed_tasks_can_be_retried_by_hand(bus: Bus) -> None:
    broken = True

    async def handler(task: Task) -> str:
        if broken:
            raise RuntimeError("dependency down")
        return f"ok {task.payload['n']}"

    ids = [await bus.queue.enqueue("manual", {"n": n}, max_attempts=1) for n in range(3)]
    async with running(bus.worker("manual", handler, backoff_base=0.05)):
        for task_id in ids:
            await eventually(lambda t=task_id: has_status(bus, t, "failed"), timeout=10, what="dead letter")
        broken = False

        assert await bus.queue.retry(ids[0]) is True
        assert await bus.queue.result(ids[0], timeout=10) == "ok 0"
        assert (await bus.queue.get(ids[0]))["attempts"] == 1  # a retry starts afresh
        assert await bus.queue.retry(ids[0]) is False  # done: nothing to retry
        assert await bus.queue.retry(10**9) is False

        assert await bus.queue.retry_all("other-queue") == 0
        assert await bus.queue.retry_all("manual") == 2
        assert [await bus.queue.result(t, timeout=10) for t in ids[1:]] == ["ok 1", "ok 2"]
        assert await bus.queue.retry_all("manual") == 0
    with pytest.raises(InvalidArgument) as info:
        await bus.queue.retry_all("manual", status="done")
    assert info.value.hint


# --- dedupe, priority, delay ------------------------------------------------------------


async def test_a_dedupe_key_holds_while_the_task_is_active(bus: Bus) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def handler(task: Task) -> None:
        started.set()
        await release.wait()

    first = await bus.queue.enqueue("dedupe", {"v": 1}, dedupe_key="report:42")
    assert await bus.queue.enqueue("dedupe", {"v": 2}, dedupe_key="report:42") == first  # queued
    elsewhere = await bus.queue.enqueue("dedupe-other", dedupe_key="report:42")
    assert elsewhere != first  # keys are per queue
    async with running(bus.worker("dedupe", handler)):
        await asyncio.wait_for(started.wait(), 10)
        assert await bus.queue.enqueue("dedupe", {"v": 3}, dedupe_key="report:42") == first  # running
        release.set()
        await bus.queue.result(first, timeout=10)
        second = await bus.queue.enqueue("dedupe", {"v": 4}, dedupe_key="report:42")
        assert second != first  # done: the key is free again
        await bus.queue.result(second, timeout=10)
    assert (await bus.queue.get(first))["payload"] == {"v": 1}
    assert (await bus.queue.get(second))["payload"] == {"v": 4}
    assert len(await bus.queue.list_tasks("dedupe")) == 2


async def test_higher_priority_runs_first(bus: Bus) -> None:
    order: list[str] = []

    async def handler(task: Task) -> None:
        order.append(task.payload["name"])

    for name, priority in [("low-a", 0), ("mid-a", 5), ("one", 1), ("top", 10), ("mid-b", 5), ("low-b", 0)]:
        await bus.queue.enqueue("prio", {"name": name}, priority=priority)
    async with running(bus.worker("prio", handler, concurrency=1, batch=1)):
        await eventually(lambda: len(order) == 6, timeout=10, what="all six tasks")
    assert order == ["top", "mid-a", "mid-b", "one", "low-a", "low-b"]


async def test_a_delayed_task_runs_at_its_time_and_not_before(bus: Bus) -> None:
    ran_at: dict[int, datetime] = {}

    async def handler(task: Task) -> None:
        ran_at[task.id] = datetime.now(UTC)

    # A long poll interval: only waking at run_at (no NOTIFY then) runs them in time.
    worker = bus.worker("later", handler, poll_interval=60)
    async with running(worker):
        by_delay = await bus.queue.enqueue("later", delay=0.7)
        by_time = await bus.queue.enqueue("later", run_at=datetime.now(UTC) + timedelta(seconds=1.2))
        assert await status_of(bus, by_delay) == "queued"
        await eventually(lambda: len(ran_at) == 2, timeout=4, what="both delayed tasks")
    for task_id in (by_delay, by_time):
        row = await bus.queue.get(task_id)
        assert row["status"] == "done"
        assert row["started_at"] >= row["run_at"]
        assert row["run_at"] <= ran_at[task_id] <= row["run_at"] + timedelta(seconds=1)
    assert ran_at[by_delay] < ran_at[by_time]


async def test_every_enqueue_path_notifies_once_naming_the_queue_or_its_due_time(
    bus: Bus, db_url: str
) -> None:
    heard: list[str] = []
    conn = await asyncpg.connect(db_url)  # direct, as LISTEN must be (not through a pooler)
    await conn.add_listener("bg_tasks", lambda *args: heard.append(args[3]))

    async def notifies(action: Callable[[], Any]) -> list[str]:
        heard.clear()
        await action()
        # One round trip on the listening connection: the server sends what is pending before
        # its reply, and the driver runs the listener callbacks first.
        await conn.execute("select 1")
        return list(heard)

    try:
        later = datetime.now(UTC) + timedelta(hours=1)
        assert await notifies(lambda: bus.queue.enqueue("n1", {})) == ["n1"]
        (one,) = await notifies(lambda: bus.queue.enqueue("n1", {}, run_at=later))
        assert one.startswith("n1@") and abs(float(one[3:]) - later.timestamp()) < 0.01
        assert await notifies(lambda: bus.queue.enqueue_many("n2", [{}, {}, {}])) == ["n2"]
        (many,) = await notifies(
            lambda: bus.queue.enqueue_many("n2", [{}, {}], options=Options(run_at=later))
        )
        assert many.startswith("n2@")
        added = await notifies(lambda: bus.queue.enqueue_many("n3", [{}, {}], dedupe_keys=["a", "b"]))
        assert added == ["n3"]
        # Every row already queued under its dedupe key: nothing was added, nobody is woken.
        assert await notifies(lambda: bus.queue.enqueue_many("n3", [{}], dedupe_keys=["a"])) == []
        assert await notifies(lambda: bus.queue.enqueue("n3", {}, dedupe_key="b")) == []
        assert await notifies(lambda: conn.execute("select bg.enqueue('n4', '{}')")) == ["n4"]
    finally:
        await conn.close()


async def test_a_worker_without_notifications_wakes_for_a_delayed_task(bus: Bus) -> None:
    ran_at: list[datetime] = []

    async def handler(task: Task) -> None:
        ran_at.append(datetime.now(UTC))

    task_id = await bus.queue.enqueue("later", delay=0.6)
    async with running(Worker(bus.pool, "later", handler, WorkerConfig(poll_interval=60))):
        await eventually(lambda: ran_at, timeout=4, what="the delayed task")
    row = await bus.queue.get(task_id)
    assert row["run_at"] <= ran_at[0] <= row["run_at"] + timedelta(seconds=1)


# --- timeouts and limits ----------------------------------------------------------------


async def test_a_handler_past_its_timeout_is_cancelled_and_counts_as_a_failure(bus: Bus) -> None:
    interrupted: list[int] = []

    async def sleeper(task: Task) -> None:
        try:
            await asyncio.sleep(30)  # a handler that outlives its timeout, not a wait
        except asyncio.CancelledError:
            interrupted.append(task.attempt)
            raise

    started = time.monotonic()
    task_id = await bus.queue.enqueue("slow", timeout=0.2, max_attempts=2)
    async with running(bus.worker("slow", sleeper, backoff_base=0.05)):
        with pytest.raises(TaskFailed, match="timed out"):
            await bus.queue.result(task_id, timeout=10)
    assert time.monotonic() - started < 5
    assert interrupted == [1, 2]
    row = await bus.queue.get(task_id)
    assert row["status"] == "failed"
    assert row["attempts"] == 2
    assert "timed out" in row["last_error"]


async def test_a_global_limit_holds_across_workers(bus: Bus) -> None:
    now_running = 0
    peak = 0

    async def handler(task: Task) -> int:
        nonlocal now_running, peak
        now_running += 1
        peak = max(peak, now_running)
        try:
            await asyncio.sleep(0.1)  # the handler's work: long enough for the tasks to overlap
        finally:
            now_running -= 1
        return int(task.payload["n"])

    await bus.queue.set_limit("limited", 2)
    ids = await bus.queue.enqueue_many("limited", [{"n": n} for n in range(12)])
    workers = [bus.worker("limited", handler, concurrency=5, batch=5, poll_interval=0.3) for _ in range(3)]
    async with running(*workers):
        results = [await bus.queue.result(t, timeout=15) for t in ids]
    assert results == list(range(12))
    assert peak == 2
    await bus.queue.set_limit("limited", None)  # removing the limit frees the queue again
    more = await bus.queue.enqueue_many("limited", [{"n": n} for n in range(6)])
    peak = 0
    async with running(bus.worker("limited", handler, concurrency=6)):
        assert [await bus.queue.result(t, timeout=10) for t in more] == list(range(6))
    assert peak > 2
    with pytest.raises(InvalidArgument) as info:
        await bus.queue.set_limit("limited", 0)
    assert info.value.hint


async def test_a_slot_freed_under_the_global_limit_is_reused_at_once(bus: Bus) -> None:
    async def handler(task: Task) -> None:
        await asyncio.sleep(0.05)  # the handler's work: 50 ms a task, so the limit shows in the total

    await bus.queue.set_limit("limited", 1)
    ids = await bus.queue.enqueue_many("limited", [{}] * 4)
    started = time.monotonic()
    async with running(bus.worker("limited", handler, concurrency=4, poll_interval=30)):
        await eventually(lambda: all_done(bus, ids), timeout=3, what="4 tasks of 50 ms at a limit of 1")
    assert time.monotonic() - started < 3


async def test_a_worker_held_back_by_the_limit_does_not_hammer_the_database(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    claims = 0
    real_run = db.run

    async def counting_run(conn: Any, name: str, *args: Any) -> Any:
        nonlocal claims
        if name == "queue_claim":
            claims += 1
        return await real_run(conn, name, *args)

    monkeypatch.setattr(db, "run", counting_run)
    release = asyncio.Event()

    async def handler(task: Task) -> None:
        await release.wait()

    await bus.queue.set_limit("held", 1)
    first, second = await bus.queue.enqueue_many("held", [{}, {}])
    async with running(bus.worker("held", handler, concurrency=5, poll_interval=0.5)):
        await eventually(lambda: has_status(bus, first, "running"), timeout=10, what="the first task")
        before = claims
        await asyncio.sleep(1.0)  # measuring a rate over a fixed window, not waiting for a state
        during = claims - before
        release.set()
        await bus.queue.result(second, timeout=10)
    assert during <= 10, f"{during} claims in 1 s while the queue was at its limit"


# --- cancellation and results -----------------------------------------------------------


async def test_a_cancelled_queued_task_never_runs(bus: Bus) -> None:
    ran: list[str] = []

    async def handler(task: Task) -> None:
        ran.append(task.payload["name"])

    doomed = await bus.queue.enqueue("cancel", {"name": "doomed"})
    assert await bus.queue.cancel(doomed) == "cancelled"
    assert await bus.queue.cancel(doomed) == "cancelled"  # already final
    assert await bus.queue.cancel(10**9) is None
    async with running(bus.worker("cancel", handler)):
        after = await bus.queue.enqueue("cancel", {"name": "after"})
        await bus.queue.result(after, timeout=10)
    assert ran == ["after"]
    row = await bus.queue.get(doomed)
    assert row["status"] == "cancelled"
    assert row["attempts"] == 0
    assert row["finished_at"] is not None
    with pytest.raises(TaskCancelled):
        await bus.queue.result(doomed, timeout=1)


async def test_a_running_task_hears_its_cancellation_at_once(bus: Bus) -> None:
    started = asyncio.Event()
    heard: list[float] = []

    async def handler(task: Task) -> None:
        started.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task.wait_cancelled(), 3)
            heard.append(time.monotonic())
        assert task.cancel_requested
        task.raise_if_cancelled()

    task_id = await bus.queue.enqueue("cancel")
    # A long lease: renewals (every lease/3 s) would be far too slow to tell the handler.
    async with running(bus.worker("cancel", handler, lease=60)):
        await asyncio.wait_for(started.wait(), 10)
        asked = time.monotonic()
        assert await bus.queue.cancel(task_id) == "cancelling"
        with pytest.raises(TaskCancelled):
            await bus.queue.result(task_id, timeout=10)
    assert heard, "the handler was never told"
    assert heard[0] - asked < 1.0
    row = await bus.queue.get(task_id)
    assert row["status"] == "cancelled"
    assert row["attempts"] == 1
    assert "cancelled" in row["last_error"]


async def test_result_returns_the_value_or_raises_why_not(bus: Bus) -> None:
    async def handler(task: Task) -> Any:
        if task.payload.get("fail"):
            raise KeyError("missing")
        return {"sum": sum(task.payload["xs"]), "echo": task.payload["xs"]}

    async with running(bus.worker("results", handler, backoff_base=0.05)):
        ok = await bus.queue.enqueue("results", {"xs": [1, 2, 3]})
        bad = await bus.queue.enqueue("results", {"fail": True}, max_attempts=1)
        assert await bus.queue.result(ok, timeout=10) == {"sum": 6, "echo": [1, 2, 3]}
        with pytest.raises(TaskFailed, match="KeyError"):
            await bus.queue.result(bad, timeout=10)
    cancelled = await bus.queue.enqueue("results", {"xs": []})
    await bus.queue.cancel(cancelled)
    with pytest.raises(TaskCancelled):
        await bus.queue.result(cancelled, timeout=5)
    waiting = await bus.queue.enqueue("no-worker")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="still queued"):
        await bus.queue.result(waiting, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 2
    with pytest.raises(NotFound):
        await bus.queue.result(10**9, timeout=1)


# --- periodic tasks ---------------------------------------------------------------------


async def test_each_schedule_tick_is_enqueued_exactly_once(
    bus: Bus, db_url: str, settings_for: Callable[..., Any]
) -> None:
    before = datetime.now(UTC)
    first = await schedules.add(bus.pool, "every-minute", "* * * * *", "cron", {"kind": "tick"})
    assert first.second == 0 and before < first <= before + timedelta(seconds=60)

    settings = settings_for(db_url)
    conns = [await db.connect(settings) for _ in range(3)]
    fired: list[int] = []
    forced: list[datetime] = []
    try:
        for _ in range(4):
            tick = await bus.pool.fetchval(
                "UPDATE bg.schedules SET next_run = now() - interval '1 second' "
                "WHERE name = 'every-minute' RETURNING next_run"
            )
            forced.append(tick)
            go = asyncio.Event()

            async def fire_loop(conn: asyncpg.Connection, go: asyncio.Event = go) -> None:
                await go.wait()
                # A fixed window of racing, not a wait: every connection fires for 0.3 s.
                deadline = time.monotonic() + 0.3
                while time.monotonic() < deadline:
                    fired.append(await schedules.fire_due(conn))

            loops = [asyncio.create_task(fire_loop(c)) for c in conns]
            go.set()
            await asyncio.gather(*loops)
    finally:
        for c in conns:
            await c.close()

    rows = await bus.pool.fetch("SELECT id, payload FROM bg.tasks WHERE queue = 'cron' ORDER BY id")
    ticks = Counter(datetime.fromisoformat(r["payload"]["tick"]) for r in rows)
    assert all(ticks[t] == 1 for t in forced), ticks
    assert set(ticks.values()) == {1}, ticks  # a real minute boundary may add one tick, once
    assert sum(fired) == len(rows)
    assert len(fired) > 30, "the loops barely ran; the test proves nothing"
    assert all(r["payload"]["schedule"] == "every-minute" for r in rows)
    assert all(r["payload"]["kind"] == "tick" for r in rows)
    (schedule,) = await schedules.list_all(bus.pool)
    assert schedule["next_run"] > datetime.now(UTC)
    assert schedule["last_task"] == rows[-1]["id"]


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("*/15 * * * *", "2024-01-01 10:07:30+00", "2024-01-01 10:15:00+00"),
        ("*/15 * * * *", "2024-01-01 10:07:30+02", "2024-01-01 08:15:00+00"),
        ("0 9 * * mon", "2024-01-01 09:00:00+00", "2024-01-08 09:00:00+00"),
        ("0 0 * * 7", "2024-01-01 00:00:00+00", "2024-01-07 00:00:00+00"),
        ("@daily", "2024-02-28 23:59:00+00", "2024-02-29 00:00:00+00"),
        ("0 0 29 2 *", "2023-03-01 00:00:00+00", "2024-02-29 00:00:00+00"),
        ("30 4 1,15 * 5", "2024-03-02 00:00:00+00", "2024-03-08 04:30:00+00"),
        ("0 12 * jan-mar *", "2024-03-31 12:00:00+00", "2025-01-01 12:00:00+00"),
    ],
)
async def test_cron_next(conn: asyncpg.Connection, expr: str, after: str, expected: str) -> None:
    got = await conn.fetchval("SELECT bg.cron_next($1, $2)", expr, datetime.fromisoformat(after))
    assert got == datetime.fromisoformat(expected)


async def test_a_malformed_cron_is_refused_with_a_hint(bus: Bus) -> None:
    for cron, message in [
        ("every minute", "expected 5 fields"),
        ("61 * * * *", "out of range"),
        ("* * * * mon-", "malformed cron field"),
    ]:
        with pytest.raises(InvalidArgument, match=message) as info:
            await schedules.add(bus.pool, "bad", cron, "q")
        assert info.value.hint, cron
    assert await schedules.list_all(bus.pool) == []


# --- SQL API, shutdown, batches ---------------------------------------------------------


async def test_sql_functions_refuse_bad_arguments_with_a_hint(conn: asyncpg.Connection) -> None:
    for sql, message in [
        ("SELECT bg.enqueue(NULL)", "invalid queue name NULL"),
        ("SELECT bg.enqueue('q', '{}', -1)", "priority must be between"),
        ("SELECT bg.enqueue('q', max_attempts => 0)", "max_attempts"),
        ("SELECT bg.enqueue('q', timeout_s => 0)", "timeout_s must be positive"),
        ("SELECT bg.retry_tasks(NULL, 'bogus')", "unknown task status"),
        ("SELECT bg.retry_tasks(NULL, 'done')", "only failed or cancelled"),
        ("SELECT bg.cancel_tasks(NULL, 'failed')", "only queued or running"),
        ("SELECT bg.set_queue_limit('q', 0)", "at least 1"),
        ("SELECT bg.cron_next('* * *')", "expected 5 fields"),
        ("SELECT bg.add_schedule('x', '*/0 * * * *', 'q')", "out of range"),
    ]:
        with pytest.raises(asyncpg.InvalidParameterValueError, match=message) as info:
            await conn.fetchval(sql)
        assert info.value.hint, sql
    assert await conn.fetchval("SELECT count(*) FROM bg.tasks") == 0


async def test_python_enqueue_refuses_bad_options_with_a_hint(bus: Bus) -> None:
    with pytest.raises(InvalidArgument, match="priority") as info:
        await bus.queue.enqueue("q", priority=-1)
    assert info.value.hint
    with pytest.raises(InvalidArgument, match="invalid queue name") as info:
        await bus.queue.enqueue("no spaces")
    assert info.value.hint


async def test_a_graceful_stop_releases_unfinished_tasks(bus: Bus) -> None:
    started: set[str] = set()
    stopping = asyncio.Event()
    interrupted: list[str] = []

    async def handler(task: Task) -> str:
        name = task.payload["name"]
        started.add(name)
        try:
            if name == "quick":
                await stopping.wait()
                return "finished in the grace period"
            await asyncio.Event().wait()  # blocks until cancelled
        except asyncio.CancelledError:
            interrupted.append(name)
            raise
        return "unreachable"

    quick = await bus.queue.enqueue("stop", {"name": "quick"})
    stuck = await bus.queue.enqueue("stop", {"name": "stuck"})
    worker = bus.worker("stop", handler, lease=60)
    run = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: started == {"quick", "stuck"}, timeout=10, what="both tasks to start")
        stopping.set()
        worker.stop(grace=0.3)
        await asyncio.wait_for(run, 10)
    finally:
        worker.stop()
        await asyncio.wait_for(asyncio.gather(run, return_exceptions=True), 10)

    assert interrupted == ["stuck"]
    assert await bus.queue.result(quick, timeout=1) == "finished in the grace period"
    row = await bus.queue.get(stuck)
    assert row["status"] == "queued"
    assert row["attempts"] == 0
    assert row["locked_by"] is None

    async def finish(task: Task) -> int:
        return task.attempt

    async with running(bus.worker("stop", finish)):
        assert await bus.queue.result(stuck, timeout=10) == 1


async def test_enqueue_many_adds_a_batch_in_one_call(bus: Bus) -> None:
    ids = await bus.queue.enqueue_many(
        "batch", [{"n": n} for n in range(20)], options=Options(priority=3, max_attempts=2)
    )
    assert len(set(ids)) == 20
    assert ids == sorted(ids)
    listed = await bus.queue.list_tasks("batch", "queued")
    assert {t["id"] for t in listed} == set(ids)
    assert {(t["priority"], t["max_attempts"]) for t in listed} == {(3, 2)}

    async def double(task: Task) -> int:
        return int(task.payload["n"]) * 2

    async with running(bus.worker("batch", double, batch=7)):
        results = [await bus.queue.result(t, timeout=10) for t in ids]
    assert results == [n * 2 for n in range(20)]

    active = await bus.queue.enqueue("batch", dedupe_key="k1")
    more = await bus.queue.enqueue_many("batch", [{}, {}, {}], dedupe_keys=["k1", "k2", "k2"])
    assert len(more) == 1 and active not in more  # keys already active are skipped
    with pytest.raises(InvalidArgument) as info:
        await bus.queue.enqueue_many("batch", [{}], options=Options(priority=-1))
    assert info.value.hint
