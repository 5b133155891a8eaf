"""Migrations against a real server: fresh, repeated, concurrent, tampered, extension missing."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from bus import db, migrate
from bus.errors import MigrationError
from bus.migrate import Migration, load_migrations
from tests.conftest import with_user


async def applicable(conn) -> list[int]:  # type: ignore[no-untyped-def]
    """Versions this server can apply (pgvector may be missing, e.g. Debian's PostgreSQL)."""
    available = {r["name"] for r in await conn.fetch("select name from pg_available_extensions")}
    return [m.version for m in load_migrations() if set(m.requires) <= available]


async def test_fresh_database_gets_every_migration(empty_db_url: str, settings_for) -> None:
    async with db.connection(settings_for(empty_db_url)) as conn:
        report = await migrate.migrate(conn)
        assert [m.version for m in report.applied] == await applicable(conn)
        assert await conn.fetchval("SELECT to_regclass('bg.shared_state') IS NOT NULL")
        assert await migrate.is_current(conn)


async def test_second_run_does_nothing(db_url: str, settings_for) -> None:
    async with db.connection(settings_for(db_url)) as conn:
        report = await migrate.migrate(conn)
        assert report.applied == []
        assert report.already == len(await applicable(conn))


async def test_concurrent_runs_apply_each_migration_once(empty_db_url: str, settings_for) -> None:
    settings = settings_for(empty_db_url)
    conns = [await db.connect(settings) for _ in range(4)]
    try:
        reports = await asyncio.gather(*(migrate.migrate(c) for c in conns))
        applied = sorted(m.version for r in reports for m in r.applied)
        assert applied == await applicable(conns[0])
        rows = await conns[0].fetch("SELECT version, count(*) FROM bg.schema_migrations GROUP BY 1")
        assert all(r["count"] == 1 for r in rows)
    finally:
        for c in conns:
            await c.close()


async def test_edited_migration_is_refused(db_url: str, settings_for) -> None:
    tampered = load_migrations()
    tampered[0] = replace(tampered[0], sql=tampered[0].sql + "\n-- sneaky edit\n")
    async with db.connection(settings_for(db_url)) as conn:
        with pytest.raises(MigrationError, match="edited after it was applied"):
            await migrate.migrate(conn, tampered)
        with pytest.raises(MigrationError, match=r"0001_init\.sql"):
            await migrate.status(conn, tampered)


def _optional(ext: str) -> Migration:
    sql = f"-- requires-extension: {ext}\nCREATE TABLE bg.optional_feature (id int);\n"
    return Migration(len(load_migrations()) + 1, "optional_feature", sql, (ext,))


async def test_missing_extension_skips_that_migration_then_applies_it_later(
    db_url: str, settings_for
) -> None:
    base = load_migrations()
    async with db.connection(settings_for(db_url)) as conn:
        missing = [*base, _optional("no_such_extension_here")]
        report = await migrate.migrate(conn, missing)
        assert report.applied == []
        [reason] = [r for m, r in report.skipped if m.name == "optional_feature"]
        assert "no_such_extension_here extension is not installed" in reason
        states = await migrate.status(conn, missing)
        assert states[-1].state == "unavailable"
        assert not await conn.fetchval("SELECT to_regclass('bg.optional_feature') IS NOT NULL")

        # Once the extension exists (plpgsql always does), the same step applies.
        available = [*base, _optional("plpgsql")]
        report = await migrate.migrate(conn, available)
        assert "optional_feature" in [m.name for m in report.applied]
        assert await conn.fetchval("SELECT to_regclass('bg.optional_feature') IS NOT NULL")


async def test_extension_the_user_may_not_create_is_skipped_with_the_reason(
    db_url: str, settings_for, server_url: str
) -> None:
    async with db.connection(settings_for(db_url)) as admin:
        if not await db.run(admin, "extension_available", "vector"):
            pytest.skip("pgvector is not installed on this server")
        if await db.run(admin, "extension_installed", "vector"):
            await admin.execute("DROP EXTENSION vector CASCADE")
        await admin.execute("DROP ROLE IF EXISTS bg_test_plain")
        await admin.execute("CREATE ROLE bg_test_plain LOGIN PASSWORD 'plain'")
        await admin.execute("GRANT ALL ON SCHEMA bg TO bg_test_plain")
        await admin.execute("GRANT ALL ON ALL TABLES IN SCHEMA bg TO bg_test_plain")
        dbname = await admin.fetchval("SELECT current_database()")
        await admin.execute(f'GRANT CREATE ON DATABASE "{dbname}" TO bg_test_plain')
    plain_url = with_user(db_url, "bg_test_plain", "plain")
    try:
        async with db.connection(settings_for(plain_url)) as conn:
            report = await migrate.migrate(conn, [*load_migrations(), _optional("vector")])
            [reason] = [r for m, r in report.skipped if m.name == "optional_feature"]
            assert "may not create the vector extension" in reason
    finally:
        async with db.connection(settings_for(db_url)) as admin:
            await admin.execute(f'REVOKE ALL ON DATABASE "{dbname}" FROM bg_test_plain')
            await admin.execute("DROP OWNED BY bg_test_plain")
            await admin.execute("DROP ROLE bg_test_plain")


async def test_pending_sql_brings_an_empty_database_up_to_date(empty_db_url: str, settings_for) -> None:
    async with db.connection(settings_for(empty_db_url)) as conn:
        script = await migrate.pending_sql(conn)
        assert "0001_init.sql" in script
        await conn.execute(script)
        assert await migrate.is_current(conn)
        assert (await migrate.migrate(conn)).applied == []


async def test_schema_matches_what_the_code_expects(db_url: str, settings_for) -> None:
    """Every named query prepares against a freshly migrated database."""
    async with db.connection(settings_for(db_url)) as conn:
        knowledge_base = await conn.fetchval("select to_regclass('bg.documents') is not null")
        statements = await conn.fetchval(
            "select exists (select 1 from pg_extension where extname = 'pg_stat_statements')"
        )
        for query in db.queries.values():
            if query.name.startswith("rag_") and not knowledge_base:
                continue  # pgvector is missing here, so the knowledge base migration was skipped
            optional = query.name in ("queue_bench_statements_reset", "queue_bench_statements_top")
            if optional and not statements:
                continue  # `bench queue --profile` installs pg_stat_statements only where it is preloaded
            if ";" in query.sql.rstrip().rstrip(";"):
                continue  # multi-statement scripts can't be prepared
            try:
                await conn.prepare(query.sql)
            except asyncpg.UndefinedObjectError as exc:  # e.g. a type of an optional extension
                pytest.fail(f"{query.name}: {exc}")


def test_migration_files_are_named_and_numbered(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0003_c.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="without gaps"):
        load_migrations(tmp_path)
    (tmp_path / "bad name.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_name"):
        load_migrations(tmp_path)
