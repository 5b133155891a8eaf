"""What every benchmark shares: the ``bench`` group, its scratch database, percentiles, the figures table.

``--json`` prints one JSON object on the last line. Benchmarks run in a
scratch database (``bgagents_bench``, see :mod:`bus.scratch`) on the
configured server, so they never touch your data; PGQueuer (``--compare
pgqueuer``) runs there too, in the same shape and the same run, so the ratio
compares like with like.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import click

from bus import scratch
from bus.config import Settings

BENCH_QUEUE = "bench"

logger = logging.getLogger(__name__)

Round = Callable[[], Awaitable[dict[str, float]]]
"""One contestant's round: returns its figures (``jobs_per_s`` and others)."""


@dataclass(frozen=True)
class Spread:
    """The median of several rounds' figures, with the lowest and highest."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if not values:
            return cls(float("nan"), float("nan"), float("nan"))
        return cls(statistics.median(values), min(values), max(values))

    def show(self, fmt: str = ",.0f", unit: str = "") -> str:
        """``median (low-high)``, e.g. ``12,345 (11,002-13,870)``."""
        return f"{self.median:{fmt}}{unit} ({self.low:{fmt}}-{self.high:{fmt}})"


async def alternate(
    rounds: int, contestants: dict[str, Round], before: Callable[[], Awaitable[object]] | None = None
) -> dict[str, list[dict[str, float]]]:
    """Run every contestant ``rounds`` times, alternating, each round in the reverse order of the last
    (A B, B A, A B ...), so that a machine that speeds up or slows down favours no one; ``before``
    runs ahead of every round (a CHECKPOINT, so that none lands inside one)."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in contestants}
    order = list(contestants)
    for i in range(rounds):
        for name in order if i % 2 == 0 else reversed(order):
            if before is not None:
                await before()
            cpu = time.process_time()
            figures = await contestants[name]()
            if figures.get("jobs"):  # this process's CPU per job (pgbench's is its own)
                figures["client_cpu_us_per_job"] = (time.process_time() - cpu) / figures["jobs"] * 1e6
            logger.info("round %d, %s: %.0f jobs/s", i + 1, name, figures["jobs_per_s"])
            results[name].append(figures)
    return results


def spread(results: list[dict[str, float]], key: str) -> Spread:
    """The spread of ``key`` over rounds."""
    return Spread.of([r[key] for r in results])


def ratios(ours: list[dict[str, float]], theirs: list[dict[str, float]], key: str = "jobs_per_s") -> Spread:
    """Per-round ratios ours / theirs (round i against round i)."""
    return Spread.of([a[key] / b[key] for a, b in zip(ours, theirs, strict=True) if b[key]])


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
