"""LOGIN roles for tests that act as other database users (made once per session, dropped after)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import with_user

PASSWORD = "app"
LOGINS = {
    "nobody": ("bg_test_nobody", None),  # a login with no grants on bg at all
    "reader": ("bg_test_reader", "bg_reader"),
    "writer": ("bg_test_writer", "bg_writer"),
    "runtime": ("bg_test_runtime", "bg_runtime"),
}


@pytest.fixture(scope="session")
async def test_logins(server_url: str, template_db: str) -> AsyncIterator[dict[str, str]]:
    """Login name per kind (nobody, reader, writer, runtime); the roles exist for the session."""
    admin = await asyncpg.connect(server_url)
    try:
        for name, group in LOGINS.values():
            await admin.execute(f"DROP ROLE IF EXISTS {name}")
            member = f" IN ROLE {group}" if group else ""
            await admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}'{member}")
        yield {kind: name for kind, (name, _) in LOGINS.items()}
    finally:
        for name, _ in LOGINS.values():
            await admin.execute(f"DROP ROLE IF EXISTS {name}")
        await admin.close()


def login_url(db_url: str, logins: dict[str, str], kind: str) -> str:
    """``db_url`` logging in as the test login of ``kind``."""
    return with_user(db_url, logins[kind], PASSWORD)
