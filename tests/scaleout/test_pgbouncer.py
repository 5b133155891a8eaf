"""PgBouncer in transaction mode in front of the pool, LISTEN direct (docs/scale-out.md).

The module starts its own PgBouncer (Debian's ``pgbouncer``, a temp dir config, no
systemd). The whole bus suite runs through one too with ``TEST_PGBOUNCER=1`` (see
tests/conftest.py); these tests cover what that run does not: real ``bgagents worker``
and ``bgagents run`` processes configured as the guide says, the migration lock, and
``bgagents doctor`` naming the setting that is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from agents.cli.doctor import FAIL, OK, Check, run_checks
from bus import diagnostics, migrate
from bus.client import Bus
from bus.config import Settings, load_settings
from tests.integration.test_agents import MONITORING, STARTUP, Fleet, running_up
from tests.pgbouncer import PgBouncer, free_port, start_pgbouncer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def bouncer(server_url: str) -> Iterator[PgBouncer]:
    started = start_pgbouncer(server_url)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def settings_with(data_dir: Path) -> Callable[..., Settings]:
    """Settings from exactly these variables (no session-wide PgBouncer rewriting)."""

    def build(**env: str) -> Settings:
        return load_settings(
            {"BGAGENTS_DATA_DIR": str(data_dir), "BGAGENTS_PORT": str(free_port()), **env}, env_file=None
        )

    return build


async def test_pgbouncer_shares_server_sessions_and_a_direct_url_does_not(
    bouncer: PgBouncer, db_url: str, settings_with: Callable[..., Settings]
) -> None:
    settings = settings_with(**bouncer.settings_env(db_url))
    assert await diagnostics.shares_sessions(settings, bouncer.url(db_url))
    assert not await diagnostics.shares_sessions(settings, db_url)


async def test_worker_and_agents_through_pgbouncer_with_listen_direct(
    bouncer: PgBouncer,
    db_url: str,
    cli_env: dict[str, str],
    tmp_path: Path,
    settings_with: Callable[..., Settings],
) -> None:
    monitoring = tmp_path / "monitoring.yml"
    monitoring.write_text(yaml.safe_dump(MONITORING))
    env = {
        **cli_env,
        **bouncer.settings_env(db_url),
        "BGAGENTS_MONITORING_FILE": str(monitoring),
        "BGAGENTS_POOL_MIN": "1",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    fleet = Fleet(env, logs)
    direct = await asyncpg.connect(db_url)
    try:
        worker = fleet.start("worker", "--queue", "demo", "--handler", "agents.demo:echo")
        agents = {name: fleet.start("run", name) for name in ("coordinator", "heartbeat")}
        for name, proc in agents.items():
            await fleet.wait(running_up(direct, proc), STARTUP, f"{name} running and up through PgBouncer")
        await fleet.wait(
            lambda: direct.fetchval("select holder from bg.leases where role = 'coordinator'"),
            STARTUP,
            "a coordinator leader",
        )
        # The worker's LISTEN connection is direct: an enqueue wakes it without the pool's help.
        ids = [
            await direct.fetchval("select bg.enqueue('demo', jsonb_build_object('n', $1::int))", n)
            for n in range(20)
        ]

        async def all_done() -> bool:
            done = await direct.fetchval(
                "select count(*) from bg.tasks where id = any($1) and status = 'done'", ids
            )
            return bool(done == len(ids))

        await fleet.wait(all_done, 30, "20 tasks done by the worker behind PgBouncer")
        assert worker.poll() is None, fleet.report()

        # Events: publish through the pool, delivered over the direct LISTEN connection.
        async with Bus.connect(settings_with(**bouncer.settings_env(db_url))) as bus:
            cursor = "0:0"
            got: list[dict[str, Any]] = []

            async def consume() -> None:
                async for event in bus.subscribe(["pgb"], after=cursor):
                    got.append(event.payload)
                    if len(got) == 5:
                        return

            reader = asyncio.create_task(consume())
            for n in range(5):
                await bus.publish("pgb", {"n": n})
            await asyncio.wait_for(reader, 15)
            assert got == [{"n": n} for n in range(5)]
        log = bouncer.log()
        assert "prepared statement" not in log, log[-2000:]
    finally:
        fleet.stop_all()
        await direct.close()


async def test_two_migrations_at_once_through_pgbouncer_both_succeed(
    bouncer: PgBouncer, empty_db_url: str, settings_with: Callable[..., Settings]
) -> None:
    settings = settings_with(**bouncer.settings_env(empty_db_url))
    first, second = await asyncio.gather(migrate.apply(settings), migrate.apply(settings))
    assert len(first.applied) + len(second.applied) == len(migrate.load_migrations()) - len(first.skipped)
    assert await migrate.status_of(settings)


def _lines(checks: list[Check], label: str) -> list[Check]:
    return [c for c in checks if c.label == label]


async def test_doctor_detects_pgbouncer_and_names_the_missing_setting(
    bouncer: PgBouncer, db_url: str, settings_with: Callable[..., Settings]
) -> None:
    pooled = bouncer.url(db_url)

    direct = await run_checks(settings_with(DATABASE_URL=db_url))
    assert [(c.mark, c.detail.split(":")[0]) for c in _lines(direct, "pooler")] == [(OK, "none detected")]

    no_listen = await run_checks(settings_with(DATABASE_URL=pooled, BGAGENTS_STATEMENT_CACHE_SIZE="0"))
    [line] = _lines(no_listen, "pooler")
    assert line.mark == FAIL and "BGAGENTS_LISTEN_URL is unset" in line.detail
    assert "BGAGENTS_LISTEN_URL" in line.fix

    listen_pooled = await run_checks(
        settings_with(DATABASE_URL=pooled, BGAGENTS_LISTEN_URL=pooled, BGAGENTS_STATEMENT_CACHE_SIZE="0")
    )
    [line] = _lines(listen_pooled, "pooler")
    assert line.mark == FAIL and "BGAGENTS_LISTEN_URL goes through the pooler" in line.detail

    cached = await run_checks(settings_with(DATABASE_URL=pooled, BGAGENTS_LISTEN_URL=db_url))
    [line] = _lines(cached, "statement cache")
    assert line.mark == FAIL and "BGAGENTS_STATEMENT_CACHE_SIZE=0" in line.fix, line.render()

    right = await run_checks(settings_with(**bouncer.settings_env(db_url)))
    [line] = _lines(right, "pooler")
    assert line.mark == OK and "transaction-mode pooler" in line.detail, line.render()
    assert not [c for c in right if c.mark == FAIL], [c.render() for c in right]
