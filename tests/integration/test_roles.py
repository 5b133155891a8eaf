"""The roles bg_reader and bg_writer have what an app needs, and no more; app URLs for them; migrate
as a schema owner that is not a superuser."""

from __future__ import annotations

import base64
import stat
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bus import db, migrate, roles
from bus.errors import InvalidArgument
from tests.conftest import BGAGENTS, with_user


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


# --- app URLs from `bgagents db url --role` ----------------------------------------------


@pytest.fixture
async def clean_app_logins(db_url: str) -> AsyncIterator[None]:
    yield
    admin = await asyncpg.connect(db_url)
    try:
        for kind in roles.GROUPS:
            await admin.execute(f"DROP ROLE IF EXISTS {roles.login_name(kind)}")
    finally:
        await admin.close()


async def test_db_url_role_hands_out_a_login_per_role_with_a_private_password_file(
    db_url: str, settings_for: Callable[..., Any], tmp_path: Path, clean_app_logins: None
) -> None:
    settings = settings_for(db_url, BGAGENTS_DATA_DIR=str(tmp_path))
    urls = {kind: await roles.app_url(settings, kind) for kind in ("reader", "writer", "runtime")}
    stored = tmp_path / roles.PASSWORD_FILE
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert await roles.app_url(settings, "writer") == urls["writer"]  # the same password again
    for kind, url in urls.items():
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("select current_user") == f"bgagents_{kind}"
            await conn.fetch("select * from bg.queue_stats")
            if kind == "reader":
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.fetchval("select bg.enqueue('app', '{}')")
            else:
                assert await conn.fetchval("select bg.enqueue('app', '{}')") > 0
            if kind != "runtime":
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute("delete from bg.tasks")
            assert not await conn.fetchval("select rolsuper from pg_roles where rolname = current_user")
        finally:
            await conn.close()
    with pytest.raises(InvalidArgument):
        await roles.app_url(settings, "admin")


def test_db_url_role_on_the_command_line(
    db_url: str, cli_env: dict[str, str], tmp_path: Path, clean_app_logins: None
) -> None:
    env = {**cli_env, "DATABASE_URL": db_url, "BGAGENTS_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [*BGAGENTS, "db", "url", "--role", "writer"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("postgresql://bgagents_writer:")


async def test_the_password_verifier_is_the_one_postgresql_makes(conn: asyncpg.Connection) -> None:
    """The server only receives the SCRAM verifier; it must be the one the server computes itself."""
    await conn.execute("DROP ROLE IF EXISTS bg_test_scram")
    try:
        await conn.execute("SET password_encryption = 'scram-sha-256'")
        await conn.execute("CREATE ROLE bg_test_scram PASSWORD 'correct horse'")
        made = await conn.fetchval("select rolpassword from pg_authid where rolname = 'bg_test_scram'")
        iterations, salt = made.split("$")[1].split(":")
        assert roles.scram_verifier("correct horse", base64.b64decode(salt), int(iterations)) == made
    finally:
        await conn.execute("DROP ROLE IF EXISTS bg_test_scram")


# --- migrate as a schema owner that is not a superuser ------------------------------------


async def test_a_schema_owner_without_superuser_migrates_and_the_roles_still_hold(
    empty_db_url: str, settings_for: Callable[..., Any], db_url: str
) -> None:
    admin = await asyncpg.connect(empty_db_url)
    dbname = await admin.fetchval("select current_database()")
    await admin.execute("DROP ROLE IF EXISTS bg_test_schema_owner")
    await admin.execute("CREATE ROLE bg_test_schema_owner LOGIN PASSWORD 'owner' NOCREATEROLE")
    await admin.execute(f'GRANT CREATE ON DATABASE "{dbname}" TO bg_test_schema_owner')
    await admin.execute("DROP ROLE IF EXISTS bg_test_owned_writer")
    await admin.execute("CREATE ROLE bg_test_owned_writer LOGIN PASSWORD 'app' IN ROLE bg_writer")
    try:
        owner_url = with_user(empty_db_url, "bg_test_schema_owner", "owner")
        async with db.connection(settings_for(owner_url)) as conn:
            report = await migrate.migrate(conn)
            assert 10 in [m.version for m in report.applied]  # 0006 may be skipped: no pgvector for it
        owner = await admin.fetchval(
            "select pg_get_userbyid(proowner) from pg_proc where oid = 'bg.enqueue(text, jsonb, integer,"
            " timestamptz, text, integer, double precision)'::regprocedure"
        )
        assert owner == "bg_test_schema_owner"  # it may not hand them to bg_owner: they stay its own
        writer = await asyncpg.connect(with_user(empty_db_url, "bg_test_owned_writer", "app"))
        try:
            assert await writer.fetchval("select bg.enqueue('app', '{}')") > 0
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await writer.execute("delete from bg.tasks")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await writer.fetchval("select bg.take_lease('leader', 'me', 60)")
        finally:
            await writer.close()
    finally:
        await admin.execute("REASSIGN OWNED BY bg_test_schema_owner TO CURRENT_USER")
        await admin.execute("DROP OWNED BY bg_test_schema_owner")
        await admin.execute("DROP ROLE bg_test_schema_owner")
        await admin.execute("DROP ROLE bg_test_owned_writer")
        await admin.close()
