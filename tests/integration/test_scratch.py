"""The benchmarks' scratch database and doctor's diagnostics, against a real server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from bus import diagnostics, migrate, scratch
from bus.config import Settings
from bus.errors import BgError
from tests.conftest import with_user


@pytest.fixture
async def scratch_name(server_url: str) -> AsyncIterator[str]:
    """A name for a scratch database of this test's own, dropped afterwards."""
    name = f"t_bench_{uuid.uuid4().hex[:8]}"
    yield name
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_prepare_creates_and_migrates_the_scratch_database_once(
    server_url: str, scratch_name: str, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(server_url)
    url = await scratch.prepare(settings, scratch_name)
    assert url == scratch.scratch_url(server_url, scratch_name)
    assert await scratch.prepare(settings, scratch_name) == url  # already there: just migrated
    conn = await asyncpg.connect(url)
    try:
        assert await migrate.is_current(conn)
    finally:
        await conn.close()


async def test_a_user_without_createdb_gets_the_fix(
    server_url: str, scratch_name: str, settings_for: Callable[..., Settings]
) -> None:
    admin = await asyncpg.connect(server_url)
    role = f"bg_test_nocreatedb_{uuid.uuid4().hex[:6]}"
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw' NOCREATEDB")
        settings = settings_for(with_user(server_url, role, "pw"))
        with pytest.raises(BgError, match="CREATEDB") as caught:
            await scratch.prepare(settings, scratch_name)
        assert scratch_name in caught.value.message
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def test_doctor_diagnostics_of_a_migrated_database(
    db_url: str, settings_for: Callable[..., Settings]
) -> None:
    report = await diagnostics.examine(settings_for(db_url))
    assert report.version.num >= 140000 and report.version.text
    assert report.schema.error is None
    assert report.schema.named("applied") and not report.schema.named("pending")
    vector = report.extensions["vector"]
    assert vector.installed == bool(vector.installed_version)
    assert vector.available or not vector.installed


async def test_a_round_starts_with_a_checkpoint_only_where_the_user_may_run_one(
    server_url: str, db_url: str
) -> None:
    admin = await asyncpg.connect(server_url)
    role = f"bg_test_nocheckpoint_{uuid.uuid4().hex[:6]}"
    try:
        is_super = await admin.fetchval("select rolsuper from pg_roles where rolname = current_user")
        before = await admin.fetchval("select checkpoint_lsn from pg_control_checkpoint()")
        await admin.execute("select pg_switch_wal()")  # something to checkpoint
        assert await scratch.may_checkpoint(admin) is is_super
        if is_super:
            await scratch.checkpoint(admin)
            assert await admin.fetchval("select checkpoint_lsn from pg_control_checkpoint()") > before
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
        plain = await asyncpg.connect(with_user(db_url, role, "pw"))
        try:
            assert await scratch.may_checkpoint(plain) is False  # the bench skips it, no error
        finally:
            await plain.close()
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()
