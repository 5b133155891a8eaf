"""What every benchmark shares: the ``bench`` group, its scratch database, percentiles, the figures table.

``--json`` prints one JSON object on the last line. Benchmarks run in a
scratch database (``bgagents_bench``, see :mod:`bus.scratch`) on the
configured server, so they never touch your data; PGQueuer (``--compare
pgqueuer``) runs there too, in the same shape and the same run, so the ratio
compares like with like.
"""

from __future__ import annotations

import json
from typing import Any

import click

from bus import scratch
from bus.config import Settings

BENCH_QUEUE = "bench"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_database(settings: Settings) -> str:
    """URL of a migrated scratch database on the configured server."""
    return await scratch.prepare(settings)


def emit(rows: list[tuple[str, str]], summary: dict[str, Any], as_json: bool) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
    if as_json:
        click.echo(json.dumps(summary))


@click.group()
def bench() -> None:
    """Benchmarks that print their figures (each in a scratch database)."""
