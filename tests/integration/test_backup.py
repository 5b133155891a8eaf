"""Backups: `bgagents db backup` and `db restore` round-trip into an empty database, the system
runs on the restored one, pg_dump versions are checked, and the coordinator's leader keeps N."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from agents.ai import knowledge
from agents.ai.embedders import HashingEmbedder
from agents.builtin.coordinator import AgentCoordinator
from agents.runtime.supervisor import Supervisor
from bus import ai, alerts, backup, migrate
from bus.client import Bus
from bus.config import Settings
from bus.errors import BackupError
from bus.worker import Task
from tests.conftest import BGAGENTS, ROOT
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(120)

TABLES = ("tasks", "events", "alerts", "documents", "document_chunks", "schema_migrations", "event_horizon")


def bgagents(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BGAGENTS, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


async def rows_of(url: str) -> dict[str, list[str]]:
    """Every row of the tables a backup must keep, as JSON text in id order (a table missing: absent)."""
    conn = await asyncpg.connect(url)
    try:
        found: dict[str, list[str]] = {}
        for table in TABLES:
            if await conn.fetchval("select to_regclass($1) is not null", f"bg.{table}"):
                rows = await conn.fetch(f"select to_jsonb(t)::text as row from bg.{table} t order by 1")
                found[table] = [r["row"] for r in rows]
        return found
    finally:
        await conn.close()


async def fill(bus: Bus, tmp_path: Path) -> bool:
    """Tasks done, failed and queued, events, an alert and (where pgvector is) knowledge chunks;
    returns whether the knowledge base is there."""

    async def handle(task: Task) -> dict[str, Any]:
        if task.payload.get("fail"):
            raise ValueError("planned failure")
        return {"doubled": task.payload["n"] * 2}

    done = [await bus.queue.enqueue("work", {"n": i}) for i in range(5)]
    failed = [await bus.queue.enqueue("work", {"n": i, "fail": True}, max_attempts=1) for i in range(3)]
    for i in range(4):
        await bus.queue.enqueue("later", {"n": i}, priority=i)
    worker = bus.worker("work", handle)
    running = asyncio.create_task(worker.run())
    try:

        async def finished() -> bool:
            rows = [await bus.queue.get(t) for t in done + failed]
            return all(r["status"] in ("done", "failed") for r in rows)

        await eventually(finished, timeout=30, what="the work tasks done or failed")
    finally:
        worker.stop(1.0)
        await running
    for i in range(20):
        await bus.publish("backup.test", {"i": i, "text": "é ✓"}, source="test")
    alert = await alerts.open_alert(
        bus.pool, "fp-backup", "disk_full", {"host": "db1"}, "critical", "disk full"
    )
    await alerts.fire(bus.pool, alert["id"])
    if not await ai.knowledge_ready(bus.pool):
        return False
    doc = tmp_path / "guide.md"
    doc.write_text(
        "# Guide\n\n## Backups\n\nRestore into an empty database.\n\n## Logs\n\nOne file per agent.\n"
    )
    await knowledge.ingest(bus.pool, HashingEmbedder(), [doc])
    return True


@dataclass
class Pair:
    source: str
    target: str
    settings_for: Callable[..., Settings]
    env: dict[str, str]


@pytest.fixture
async def pair(
    db_url: str, empty_db_url: str, settings_for: Callable[..., Settings], cli_env: dict[str, str]
) -> AsyncIterator[Pair]:
    yield Pair(db_url, empty_db_url, settings_for, cli_env)


async def test_backup_restores_into_an_empty_database_and_the_system_runs_there(
    pair: Pair, tmp_path: Path
) -> None:
    async with Bus.connect(pair.settings_for(pair.source), listen=False) as bus:
        has_knowledge = await fill(bus, tmp_path)
    before = await rows_of(pair.source)
    assert len(before["tasks"]) == 12 and len(before["events"]) >= 20 and len(before["alerts"]) == 1
    statuses = {'"status": "done"', '"status": "failed"', '"status": "queued"'}
    assert all(any(s in row for row in before["tasks"]) for s in statuses)
    if has_knowledge:
        assert len(before["document_chunks"]) >= 2

    dump = tmp_path / "bg.dump"
    done = bgagents({**pair.env, "DATABASE_URL": pair.source}, "db", "backup", str(dump))
    assert done.returncode == 0, done.stderr
    assert f"backed up schema bg to {dump}" in done.stdout
    done = bgagents({**pair.env, "DATABASE_URL": pair.target}, "db", "restore", str(dump))
    assert done.returncode == 0, done.stderr
    assert "restored schema bg" in done.stdout and "0 newer migration(s) applied" in done.stdout

    after = await rows_of(pair.target)
    assert after == before  # every task, event, alert and chunk, column for column
    assert ("document_chunks" in after) == has_knowledge

    settings = pair.settings_for(pair.target)
    await migrate.require_current(settings)
    async with Bus.connect(settings) as bus:
        cursor = await bus.events.current_cursor()
        new_id = await bus.queue.enqueue("after-restore", {"n": 21})
        assert new_id > 12  # the sequence came back too

        async def handle(task: Task) -> dict[str, int]:
            return {"doubled": task.payload["n"] * 2}

        worker = bus.worker("after-restore", handle)
        running = asyncio.create_task(worker.run())
        try:
            assert await bus.queue.result(new_id, timeout=20) == {"doubled": 42}
        finally:
            worker.stop(1.0)
            await running
        event_id = await bus.publish("after.restore", {"ok": True})
        events = await eventually(
            lambda: bus.events.read_after(cursor), timeout=10, what="the new event after the cursor"
        )
        assert [e.id for e in events] == [event_id]
        everything = await bus.events.read_after("0:0", limit=10_000)
        assert [e.id for e in everything][-1] == event_id  # after every restored one
        assert len(everything) == len(before["events"]) + 1
        if has_knowledge:
            hits = await knowledge.search(bus.pool, HashingEmbedder(), "restore into an empty database", k=2)
            assert hits and hits[0].heading.endswith("Backups")
    done = bgagents({**pair.env, "DATABASE_URL": pair.target}, "migrate")
    assert done.returncode == 0 and "schema is current: 0 applied now" in done.stdout, done.stderr


async def test_restore_refuses_a_database_with_a_bg_schema_unless_forced(pair: Pair, tmp_path: Path) -> None:
    async with Bus.connect(pair.settings_for(pair.source), listen=False) as bus:
        await bus.queue.enqueue("kept", {"n": 1})
    dump = tmp_path / "bg.dump"
    await backup.backup(pair.settings_for(pair.source), dump)
    target = pair.settings_for(pair.target)
    await migrate.apply(target)  # the target has a (migrated, empty) bg schema now
    env = {**pair.env, "DATABASE_URL": pair.target}
    refused = bgagents(env, "db", "restore", str(dump))
    assert refused.returncode == 1
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert errors[0].startswith("error: the target database already has a bg schema with ")
    assert "pass --force to drop the existing bg schema" in errors[0]
    forced = bgagents(env, "db", "restore", "--force", str(dump))
    assert forced.returncode == 0, forced.stderr
    assert "dropped the existing bg schema" in forced.stdout
    assert await rows_of(pair.target) == await rows_of(pair.source)


def dumps_in(folder: Path) -> list[Path]:
    return list(folder.glob("*.dump*"))


def fake_client(folder: Path, name: str, major: int) -> Path:
    path = folder / str(major) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{name} (PostgreSQL) {major}.2'\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


async def test_a_pg_dump_older_than_the_server_is_refused_naming_both_versions(
    pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = pair.settings_for(pair.source)
    old = fake_client(tmp_path, "pg_dump", 9)
    monkeypatch.setattr(backup, "candidates", lambda name, s: [old])
    with pytest.raises(BackupError) as caught:
        await backup.backup(settings, tmp_path / "never.dump")
    major = await backup.server_major(settings)
    assert str(caught.value).startswith(f"server is PostgreSQL {major}, pg_dump is 9 ({old}): ")
    assert f"install postgresql-client-{major}" in str(caught.value)
    assert not dumps_in(tmp_path)
    newer = fake_client(tmp_path, "pg_dump", major + 1)
    same = fake_client(tmp_path, "pg_dump", major)
    monkeypatch.setattr(backup, "candidates", lambda name, s: [old, newer, same])
    assert await backup.choose_pg_dump(settings, major) == backup.Tool(same, major)  # the server's own first
    monkeypatch.setattr(backup, "candidates", lambda name, s: [])
    with pytest.raises(BackupError, match="pg_dump was not found"):
        await backup.choose_pg_dump(settings, major)


async def test_a_backup_by_a_newer_pg_dump_restores_into_an_older_server(
    pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian's PostgreSQL 15 backed up by the embedded package's pg_dump 18: only pg_restore 18
    reads that archive, and it writes a setting 15 refuses, so the restore goes through psql."""
    settings = pair.settings_for(pair.source)
    major = await backup.server_major(settings)
    found = await backup.tools("pg_dump", settings, major)
    newer = [t for t in found if t.major > major and t.path.with_name("psql").is_file()]
    if not newer:
        if os.environ.get("CI") == "true" and major < 18:
            pytest.fail(f"no pg_dump newer than the server's {major} (the embedded package has 18)")
        pytest.skip(f"no pg_dump newer than this server's PostgreSQL {major}")
    async with Bus.connect(settings, listen=False) as bus:
        await bus.queue.enqueue("cross", {"n": 1})
        await bus.publish("cross", {"n": 1})
    dump = tmp_path / "bg.dump"
    newest = max(newer, key=lambda t: t.major)
    with monkeypatch.context() as patched:
        patched.setattr(backup, "candidates", lambda name, s: [newest.path.with_name(name)])
        assert await backup.backup(settings, dump) == newest
    done = await backup.restore(pair.settings_for(pair.target), dump)
    assert done.tool.major == newest.major
    assert await rows_of(pair.target) == await rows_of(pair.source)


async def test_the_coordinator_leader_keeps_the_newest_backups(
    db_url: str, settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    settings = settings_for(
        db_url,
        BGAGENTS_BACKUP_DIR=str(folder),
        BGAGENTS_BACKUP_INTERVAL_HOURS=str(1.0 / 3600),  # one second
        BGAGENTS_BACKUP_KEEP="2",
    )
    seen: set[str] = set()
    async with Bus.connect(settings) as bus:
        coordinator = AgentCoordinator(bus, AgentCoordinator.Config(interval=0.2, heartbeat_interval=0.5))
        supervisor = Supervisor(bus, [coordinator])
        running = asyncio.create_task(supervisor.run())
        try:

            async def four_made() -> bool:
                names = {p.name for p in backup.backups_in(folder)}
                assert len(names) <= 2, names  # never more than BGAGENTS_BACKUP_KEEP
                seen.update(names)
                return len(seen) >= 4

            await eventually(four_made, timeout=60, what="four scheduled backups made", interval=0.05)
            assert coordinator.is_leader
        finally:
            supervisor.stop()
            await asyncio.wait_for(running, 15)
    kept = backup.backups_in(folder)
    assert len(kept) == 2 and all(backup.NAME_PATTERN.match(p.name) for p in kept)
    assert not [p for p in folder.iterdir() if p.name.endswith(".partial")]
    assert kept[-1].read_bytes()[:5] == b"PGDMP"  # a custom-format archive


async def test_a_failing_scheduled_backup_is_logged_and_the_coordinator_carries_on(
    db_url: str, settings_for: Callable[..., Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the backup folder should be")
    settings = settings_for(
        db_url, BGAGENTS_BACKUP_DIR=str(blocker / "backups"), BGAGENTS_BACKUP_INTERVAL_HOURS="1"
    )
    async with Bus.connect(settings) as bus:
        coordinator = AgentCoordinator(bus, AgentCoordinator.Config(interval=0.1, heartbeat_interval=0.5))
        supervisor = Supervisor(bus, [coordinator])
        running = asyncio.create_task(supervisor.run())
        try:
            await eventually(
                lambda: any("scheduled backup into" in r.getMessage() for r in caplog.records),
                timeout=30,
                what="the failed backup logged",
            )
            failures = [r for r in caplog.records if "scheduled backup into" in r.getMessage()]
            assert failures[0].levelname == "WARNING" and "trying again in 1 h" in failures[0].getMessage()
            assert coordinator.is_leader and not running.done()
            assert (
                len([r for r in caplog.records if "scheduled backup into" in r.getMessage()]) == 1
            )  # not retried yet
        finally:
            supervisor.stop()
            await asyncio.wait_for(running, 15)
