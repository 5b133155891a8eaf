"""``bgagents bench``: benchmarks a user can run, each printing a table of figures.

``--json`` prints one JSON object on the last line. Benchmarks run in a
scratch database (``bgagents_bench``) on the configured server, so they never
touch your data; PGQueuer (``--compare pgqueuer``) runs there too, in the same
shape and the same run, so the ratio compares like with like.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import click

from bus import db, migrate
from bus.config import Settings
from bus.errors import BgError

BENCH_DB = "bgagents_bench"
BENCH_QUEUE = "bench"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_database(settings: Settings) -> str:
    """URL of a migrated scratch database on the configured server."""
    url = db.resolve_url(settings)
    parts = urlsplit(url)
    bench_url = urlunsplit(parts._replace(path=f"/{BENCH_DB}"))
    async with db.connection(settings, url) as conn:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", BENCH_DB)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
            except asyncpg.InsufficientPrivilegeError as exc:
                raise BgError(
                    f"the benchmark needs its own database {BENCH_DB!r}: {exc}",
                    hint=f"CREATE DATABASE {BENCH_DB} as a superuser, or grant CREATEDB",
                ) from exc
            except asyncpg.DuplicateDatabaseError:
                pass
    async with db.connection(settings, bench_url) as conn:
        await migrate.migrate(conn)
    return bench_url


def emit(rows: list[tuple[str, str]], summary: dict[str, Any], as_json: bool) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
    if as_json:
        click.echo(json.dumps(summary))


@click.group()
def bench() -> None:
    """Benchmarks that print their figures (each in a scratch database)."""
