"""Monotonic counters kept in ``bg.counters``: tasks finished, events published, claim latency.

The queue's functions (migration 0015) and the events trigger (0011) keep them
per statement (sharded per backend);
this module sums the shards and shapes them for ``/metrics``. They only grow:
pruning finished tasks or old events leaves them alone, and no process holds
them, so a restart of the web server or of every agent keeps their values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bus import db


@dataclass(frozen=True)
class LatencyHistogram:
    """One queue's claim latency: cumulative ``(upper bound, count)`` buckets ending with ``+Inf``."""

    queue: str
    buckets: tuple[tuple[float, float], ...]
    total: float

    @property
    def count(self) -> float:
        """Claims observed (the ``+Inf`` bucket)."""
        return self.buckets[-1][1] if self.buckets else 0.0


@dataclass(frozen=True)
class Counters:
    """Every counter at one moment."""

    tasks_finished: dict[tuple[str, str], float] = field(default_factory=dict)
    events_published: dict[str, float] = field(default_factory=dict)
    claim_latency: tuple[LatencyHistogram, ...] = ()


def _histograms(
    bounds: list[float], buckets: dict[str, dict[float, float]], sums: dict[str, float]
) -> tuple[LatencyHistogram, ...]:
    found = []
    for queue in sorted(buckets.keys() | sums.keys()):
        per_bucket = buckets.get(queue, {})
        running = 0.0
        cumulative = []
        for bound in sorted({*bounds, *per_bucket.keys(), float("inf")}):
            running += per_bucket.get(bound, 0.0)
            cumulative.append((bound, running))
        found.append(LatencyHistogram(queue, tuple(cumulative), sums.get(queue, 0.0)))
    return tuple(found)


async def read(pool: db.Pool | db.Connection) -> Counters:
    """The counters summed over their shards, with every latency bucket, made cumulative."""
    finished: dict[tuple[str, str], float] = {}
    events: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    sums: dict[str, float] = {}
    for row in await db.call(pool, "counters_all"):
        metric, scope, label, value = row["metric"], row["scope"], row["label"], float(row["value"])
        if metric == "tasks_finished":
            finished[(scope, label)] = value
        elif metric == "events_published":
            events[scope] = value
        elif metric == "claim_latency":
            buckets.setdefault(scope, {})[float(label)] = value
        elif metric == "claim_latency_sum":
            sums[scope] = value
    bounds = [float(b) for b in await db.call(pool, "counters_latency_bounds")]
    return Counters(finished, events, _histograms(bounds, buckets, sums))
