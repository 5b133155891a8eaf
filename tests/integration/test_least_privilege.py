"""Other database users: what each role may do, cancels that trust the row, locks that can't hang
claims or migrations, and payload limits that hold for every caller of the SQL API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from bus import db, migrate
from bus.client import Bus
from bus.errors import MigrationError, PayloadTooLarge
from bus.migrate import Migration, load_migrations
from bus.worker import CANCEL_CHANNEL, Task
from tests.integration.db_roles import login_url, test_logins
from tests.waiting import eventually

__all__ = ["test_logins"]  # the session fixture, imported so pytest finds it

pytestmark = pytest.mark.timeout(60)

LOCK_CLASS = 1650934119  # 'bgAg': the classid of the project's advisory locks


@pytest.fixture
async def bus(db_url: str, settings_for: Callable[..., Any]) -> AsyncIterator[Bus]:
    b = await Bus.open(settings_for(db_url))
    yield b
    await b.close()


@contextlib.asynccontextmanager
async def login(db_url: str, logins: dict[str, str], kind: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(login_url(db_url, logins, kind))
    try:
        yield conn
    finally:
        await conn.close()


async def bg_tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch("select tablename from pg_tables where schemaname = 'bg' order by 1")
    return [f"bg.{r['tablename']}" for r in rows]


async def bg_views(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch("select viewname from pg_views where schemaname = 'bg' order by 1")
    return [f"bg.{r['viewname']}" for r in rows]


async def first_column(conn: asyncpg.Connection, table: str) -> str:
    name: str = await conn.fetchval(
        "select attname from pg_attribute where attrelid = $1::regclass and attnum = 1", table
    )
    return name


async def assert_no_table_writes(role: asyncpg.Connection, admin: asyncpg.Connection) -> None:
    tables = await bg_tables(admin)
    assert "bg.tasks" in tables and "bg.events" in tables and "bg.leases" in tables
    for table in tables:
        column = await first_column(admin, table)
        for statement in (
            f"insert into {table} default values",
            f"update {table} set {column} = {column}",
            f"delete from {table}",
            f"truncate {table}",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await role.execute(statement)


# --- trust the row, not the notification --------------------------------------------------


async def test_a_login_without_grants_cannot_cancel_a_running_task_by_notify(
    bus: Bus, db_url: str, test_logins: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    cancelled: list[int] = []

    async def handler(task: Task) -> str:
        started.set()
        waits = [asyncio.ensure_future(task.wait_cancelled()), asyncio.ensure_future(release.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        if task.cancel_requested:
            cancelled.append(task.id)
        task.raise_if_cancelled()
        return "finished"

    caplog.set_level(logging.INFO, logger="bus.worker")
    task_id = await bus.queue.enqueue("victim")
    worker = bus.worker("victim", handler, lease=60)
    run = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(started.wait(), 10)
        async with login(db_url, test_logins, "nobody") as nobody:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await nobody.fetchval("select bg.cancel_task($1)", task_id)
            await nobody.execute(f"select pg_notify('{CANCEL_CHANNEL}', '{task_id}')")
        await eventually(
            lambda: "ignored a cancel notification" in caplog.text,
            timeout=10,
            what="the worker checked the task's row after the forged notification",
        )
        assert not cancelled
        release.set()
        assert await bus.queue.result(task_id, timeout=10) == "finished"
    finally:
        release.set()
        worker.stop(5)
        await asyncio.wait_for(run, 15)
    row = await bus.queue.get(task_id)
    assert row["status"] == "done" and not row["cancel_requested"]


async def test_a_real_cancel_still_reaches_the_handler_at_once(bus: Bus) -> None:
    started = asyncio.Event()

    async def handler(task: Task) -> None:
        started.set()
        await asyncio.wait_for(task.wait_cancelled(), 10)
        task.raise_if_cancelled()

    task_id = await bus.queue.enqueue("victim")
    worker = bus.worker("victim", handler, lease=60)  # renewals are too slow to explain a quick cancel
    run = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(started.wait(), 10)
        asked = time.monotonic()
        assert await bus.queue.cancel(task_id) == "cancelling"
        row = await eventually(
            lambda: _with_status(bus, task_id, "cancelled"), timeout=10, what="the task cancelled"
        )
        assert row and time.monotonic() - asked < 5
    finally:
        worker.stop(5)
        await asyncio.wait_for(run, 15)


async def _with_status(bus: Bus, task_id: int, status: str) -> dict[str, Any] | None:
    row = await bus.queue.get(task_id)
    return row if row["status"] == status else None


# --- what each role may do ---------------------------------------------------------------


async def test_a_writer_works_only_through_the_functions(
    db_url: str, conn: asyncpg.Connection, test_logins: dict[str, str]
) -> None:
    async with login(db_url, test_logins, "writer") as writer:
        task = await writer.fetchval("select bg.enqueue('app', '{\"n\": 1}')")
        assert task > 0
        assert await writer.fetchval("select bg.publish('app', '{}')") > 0
        assert await writer.fetchval("select bg.cancel_task($1)", task) == "cancelled"
        assert await writer.fetchval("select bg.retry_task($1)", task) is True
        assert await writer.fetchval("select bg.cancel_tasks('app', 'queued')") == 1
        assert await writer.fetchval("select bg.retry_tasks('app', 'cancelled')") == 1
        assert await writer.fetchval("select bg.ask('which agent is down?')") > 0
        await writer.fetchval("select bg.add_schedule('app-tick', '@hourly', 'app')")
        assert await writer.fetchval("select bg.remove_schedule('app-tick')") is True
        assert [r["channel"] for r in await writer.fetch("select * from bg.events_after('0:0')")] == ["app"]
        # The functions ran as their owner, yet the rows are real.
        row = await conn.fetchrow("select status, attempts from bg.tasks where id = $1", task)
        assert row["status"] == "queued"

        await assert_no_table_writes(writer, conn)
        for internal in (
            "select bg.claim_tasks('app', 1, 'forger', 30)",
            "select bg.complete_tasks(array[1::bigint], array['\"forged\"'], 'forger')",
            "select bg.fail_task(1, 'forger', 'e', '', 1)",
            "select bg.take_lease('leader', 'forger', 3600)",
            "select bg.prune_events('0 seconds')",
            "select bg.prune_tasks('0 seconds')",
            "select bg.agent_beat('x', 1, 0, 0)",
            "select bg.set_queue_limit('app', 1)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await writer.fetchval(internal)
    assert await conn.fetchval("select count(*) from bg.leases") == 0


async def test_a_reader_only_reads(
    db_url: str, conn: asyncpg.Connection, test_logins: dict[str, str]
) -> None:
    async with login(db_url, test_logins, "reader") as reader:
        for relation in [*await bg_tables(conn), *await bg_views(conn)]:
            await reader.fetch(f"select * from {relation} limit 1")
        assert await reader.fetchval("select bg.current_cursor()")
        await reader.fetch("select * from bg.events_after('0:0')")
        assert await reader.fetchval("select bg.api_version()") >= 1
        for write in (
            "select bg.enqueue('app', '{}')",
            "select bg.publish('app', '{}')",
            "select bg.retry_task(1)",
            "select bg.cancel_task(1)",
            "select bg.ask('why?')",
            "select bg.agent_command('x', 'stop')",
            "select bg.add_schedule('t', '@hourly', 'app')",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reader.fetchval(write)
        await assert_no_table_writes(reader, conn)


async def test_no_bg_function_is_executable_by_public(conn: asyncpg.Connection) -> None:
    """A function a later migration adds is closed too (the runner revokes PUBLIC after each one)."""
    open_to_public = await conn.fetch(
        "select p.oid::regprocedure::text as fn from pg_proc p"
        " where p.pronamespace = 'bg'::regnamespace"
        " and (p.proacl is null or exists (select 1 from aclexplode(p.proacl) a"
        "      where a.grantee = 0 and a.privilege_type = 'EXECUTE'))"
    )
    assert [r["fn"] for r in open_to_public] == []


async def test_the_api_functions_run_as_a_nologin_owner(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        "select p.proname, p.prosecdef, pg_get_userbyid(p.proowner) as owner, p.proconfig"
        " from pg_proc p where p.pronamespace = 'bg'::regnamespace"
        " and p.proname in ('enqueue', 'publish', 'retry_task', 'cancel_task', 'ask',"
        "                   'events_after', 'current_cursor', 'agent_command')"
    )
    assert len(rows) == 8
    for r in rows:
        assert r["prosecdef"] and r["owner"] == "bg_owner", r
        assert r["proconfig"] == ["search_path=pg_catalog, pg_temp"], r
    assert await conn.fetchval("select not rolcanlogin from pg_roles where rolname = 'bg_owner'")


async def test_a_later_migration_creates_functions_closed_to_public(
    db_url: str, settings_for: Callable[..., Any], test_logins: dict[str, str]
) -> None:
    extra = Migration(
        len(load_migrations()) + 1,
        "extra_function",
        "CREATE FUNCTION bg.extra_probe() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;",
        (),
    )
    async with db.connection(settings_for(db_url)) as admin:
        await migrate.migrate(admin, [*load_migrations(), extra])
    async with login(db_url, test_logins, "writer") as writer:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await writer.fetchval("select bg.extra_probe()")
    async with login(db_url, test_logins, "runtime") as runtime:
        assert await runtime.fetchval("select bg.extra_probe()") == 1


# --- locks held by other sessions --------------------------------------------------------


async def test_migrate_names_the_session_holding_the_migration_lock(
    db_url: str, settings_for: Callable[..., Any]
) -> None:
    blocker = await asyncpg.connect(db_url, server_settings={"application_name": "long-tx"})
    try:
        await blocker.execute("begin")
        await blocker.fetchval("select pg_advisory_lock($1, 1)", LOCK_CLASS)
        pid = await blocker.fetchval("select pg_backend_pid()")
        async with db.connection(settings_for(db_url)) as conn:
            began = time.monotonic()
            with pytest.raises(MigrationError) as caught:
                await migrate.migrate(conn, lock_timeout=1.0)
            assert time.monotonic() - began < 5
        message = str(caught.value)
        assert "migration lock" in message and f"pid {pid}" in message and "'long-tx'" in message
    finally:
        await blocker.close()
    async with db.connection(settings_for(db_url)) as conn:  # once it ends, migrate runs again
        assert (await migrate.migrate(conn, lock_timeout=5.0)).applied == []


async def test_a_migration_waiting_for_a_table_lock_gives_up_and_names_the_holder(
    db_url: str, settings_for: Callable[..., Any]
) -> None:
    alter = Migration(
        len(load_migrations()) + 1, "alter_tasks", "ALTER TABLE bg.tasks ADD COLUMN probe int;", ()
    )
    blocker = await asyncpg.connect(db_url, server_settings={"application_name": "reporting"})
    try:
        await blocker.execute("begin")
        await blocker.fetch("select id from bg.tasks limit 1")  # holds ACCESS SHARE until it ends
        pid = await blocker.fetchval("select pg_backend_pid()")
        async with db.connection(settings_for(db_url)) as conn:
            began = time.monotonic()
            with pytest.raises(MigrationError) as caught:
                await migrate.migrate(conn, [*load_migrations(), alter], table_lock_timeout="300ms")
            assert time.monotonic() - began < 5
        assert "0011_alter_tasks.sql" in str(caught.value) or "alter_tasks" in str(caught.value)
        assert f"pid {pid}" in str(caught.value) and "'reporting'" in str(caught.value)
    finally:
        await blocker.close()


async def test_a_foreign_lock_on_a_limited_queue_fails_claims_clearly_then_they_resume(
    bus: Bus, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await bus.queue.set_limit("limited", 1)
    await bus.pool.execute("update bg.limits set claim_lock_timeout_ms = 200")
    task_id = await bus.queue.enqueue("limited")
    blocker = await asyncpg.connect(db_url, server_settings={"application_name": "squatter"})
    try:
        await blocker.execute("begin")
        await blocker.fetchval(
            "select pg_advisory_xact_lock($1, hashtext('claim:' || 'limited'))", LOCK_CLASS
        )
        pid = await blocker.fetchval("select pg_backend_pid()")
        began = time.monotonic()
        with pytest.raises(asyncpg.LockNotAvailableError) as caught:
            await db.run(bus.pool, "queue_claim", "limited", 1, "w1", 30.0)
        assert time.monotonic() - began < 3
        assert "claim lock of limited queue 'limited'" in str(caught.value)
        assert f"pid {pid}" in str(caught.value) and "'squatter'" in str(caught.value)

        caplog.set_level(logging.WARNING, logger="bus.worker")
        worker = bus.worker("limited", lambda task: "ok")
        run = asyncio.create_task(worker.run())
        try:
            await eventually(
                lambda: "claim lock" in caplog.text, timeout=10, what="the worker to report the blocked claim"
            )
            await blocker.execute("rollback")
            assert await bus.queue.result(task_id, timeout=10) == "ok"
        finally:
            worker.stop(5)
            await asyncio.wait_for(run, 15)
    finally:
        await blocker.close()


# --- payload limits over SQL -------------------------------------------------------------


async def test_payloads_over_the_limit_are_refused_in_sql_with_a_hint(
    db_url: str, test_logins: dict[str, str]
) -> None:
    big = json.dumps({"blob": "x" * (1024 * 1024)})
    async with login(db_url, test_logins, "writer") as writer:
        for call in ("select bg.enqueue('app', $1::jsonb)", "select bg.publish('app', $1::jsonb)"):
            with pytest.raises(asyncpg.PostgresError) as caught:
                await writer.fetchval(call, big)
            assert caught.value.sqlstate == "BG413"
            assert "over the limit of 1048576 bytes" in str(caught.value)
            assert "BGAGENTS_MAX_PAYLOAD_BYTES" in (caught.value.hint or "")
        assert await writer.fetchval("select bg.enqueue('app', $1::jsonb)", json.dumps({"x": "y" * 1000})) > 0
        with pytest.raises(asyncpg.PostgresError) as caught:
            await writer.fetchval("select bg.ask($1)", "why? " * 1000)
        assert caught.value.sqlstate == "BG413"
        assert "BGAGENTS_MAX_QUESTION_CHARS" in (caught.value.hint or "")


async def test_the_limits_follow_the_settings_and_reach_python_callers_as_payload_too_large(
    db_url: str, settings_for: Callable[..., Any], test_logins: dict[str, str]
) -> None:
    settings = settings_for(db_url, BGAGENTS_MAX_PAYLOAD_BYTES="2048", BGAGENTS_MAX_QUESTION_CHARS="20")
    await migrate.apply(settings)
    async with login(db_url, test_logins, "writer") as writer:
        with pytest.raises(asyncpg.PostgresError, match="over the limit of 2048 bytes"):
            await writer.fetchval("select bg.publish('app', $1::jsonb)", json.dumps({"x": "y" * 3000}))
        with pytest.raises(asyncpg.PostgresError, match="over the limit of 20"):
            await writer.fetchval("select bg.ask($1)", "a question of more than twenty characters")
    async with Bus.connect(settings_for(db_url, BGAGENTS_MAX_PAYLOAD_BYTES="4096"), listen=False) as bus:
        with pytest.raises(PayloadTooLarge, match="4096") as caught:
            await bus.queue.enqueue("app", {"x": "y" * 5000})
        assert caught.value.hint and "BGAGENTS_MAX_PAYLOAD_BYTES" in caught.value.hint
        with pytest.raises(PayloadTooLarge):
            await bus.publish("app", {"x": "y" * 5000})
