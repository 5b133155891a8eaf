"""Server-rendered SVG charts: sparklines that break at gaps, and per-minute bars of finished tasks.

No chart library, and they render without JavaScript.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from statistics import median

GAP_FACTOR = 2.5
"""Samples further apart than this many sampling intervals leave a gap in the line."""


@dataclass(frozen=True)
class Sparkline:
    """Polylines in a ``width`` × ``height`` box, one per run of samples without a gap; the last value."""

    segments: tuple[str, ...]
    last: float | None
    low: float
    high: float
    width: int = 240
    height: int = 48

    @property
    def points(self) -> str:
        """Every point, as one polyline would take them (for a single-segment line)."""
        return " ".join(self.segments)


def split_at_gaps(
    samples: list[tuple[float, float]], interval: float | None = None
) -> list[list[tuple[float, float]]]:
    """``(time, value)`` samples in runs: a new run starts after more than ``GAP_FACTOR`` intervals
    without a sample. ``interval`` defaults to the median spacing of the samples."""
    if len(samples) < 2:
        return [samples] if samples else []
    steps = [b[0] - a[0] for a, b in itertools.pairwise(samples)]
    step = interval if interval is not None else median(steps)
    runs = [[samples[0]]]
    for gap, sample in zip(steps, samples[1:], strict=True):
        if step > 0 and gap > GAP_FACTOR * step:
            runs.append([])
        runs[-1].append(sample)
    return runs


def sparkline(
    samples: list[tuple[float, float]],
    width: int = 240,
    height: int = 48,
    floor: float | None = 0.0,
    ceiling: float | None = None,
    interval: float | None = None,
) -> Sparkline:
    """Scale ``(time, value)`` samples, oldest first, into polylines split where samples are missing."""
    if not samples:
        return Sparkline((), None, 0.0, 0.0, width, height)
    times = [t for t, _ in samples]
    values = [v for _, v in samples]
    low = min(values) if floor is None else min(floor, min(values))
    high = max(values) if ceiling is None else max(ceiling, max(values))
    span_t = (max(times) - min(times)) or 1.0
    span_v = (high - low) or 1.0
    pad = 2
    segments = []
    for run in split_at_gaps(samples, interval):
        coords = []
        for t, v in run:
            x = pad + (t - times[0]) / span_t * (width - 2 * pad)
            y = height - pad - (v - low) / span_v * (height - 2 * pad)
            coords.append(f"{x:.1f},{y:.1f}")
        segments.append(" ".join(coords))
    return Sparkline(tuple(segments), values[-1], low, high, width, height)


@dataclass(frozen=True)
class Bar:
    """One bar: finished (``done``) or ``failed`` tasks in the minute starting at ``minute`` (epoch s)."""

    kind: str
    minute: float
    count: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class BarChart:
    """One queue's tasks finished and failed per minute, side by side, over ``minutes`` minutes."""

    queue: str
    bars: tuple[Bar, ...]
    done: int
    failed: int
    high: int
    minutes: int
    width: int = 360
    height: int = 80


def minute_bars(
    queue: str,
    counts: dict[tuple[str, float], int],
    now_minute: float,
    minutes: int = 30,
    width: int = 360,
    height: int = 80,
) -> BarChart:
    """Bars for ``counts[(kind, minute)]`` (kind ``done`` or ``failed``) over the ``minutes`` minutes
    ending with the one starting at ``now_minute``; empty minutes draw nothing."""
    first = now_minute - (minutes - 1) * 60
    high = max(counts.values(), default=0)
    slot = width / minutes
    bar_w = max(slot / 2 - 0.5, 0.5)
    pad = 2
    bars = []
    for (kind, minute), count in sorted(counts.items(), key=lambda item: (item[0][1], item[0][0])):
        index = round((minute - first) / 60)
        if count <= 0 or not 0 <= index < minutes:
            continue
        h = count / (high or 1) * (height - 2 * pad)
        x = index * slot + (bar_w if kind == "failed" else 0.0)
        bars.append(
            Bar(kind, minute, count, round(x, 1), round(height - pad - h, 1), round(bar_w, 1), round(h, 1))
        )
    done = sum(n for (kind, _), n in counts.items() if kind == "done")
    failed = sum(n for (kind, _), n in counts.items() if kind == "failed")
    return BarChart(queue, tuple(bars), done, failed, high, minutes, width, height)
