"""Server-rendered SVG sparklines: no chart library, and they render without JavaScript."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sparkline:
    """Points of a polyline in a ``width`` × ``height`` box, with its last value."""

    points: str
    last: float | None
    low: float
    high: float
    width: int = 240
    height: int = 48


def sparkline(
    samples: list[tuple[float, float]],
    width: int = 240,
    height: int = 48,
    floor: float | None = 0.0,
    ceiling: float | None = None,
) -> Sparkline:
    """Scale ``(time, value)`` samples into a polyline."""
    if not samples:
        return Sparkline("", None, 0.0, 0.0, width, height)
    times = [t for t, _ in samples]
    values = [v for _, v in samples]
    low = min(values) if floor is None else min(floor, min(values))
    high = max(values) if ceiling is None else max(ceiling, max(values))
    span_t = (max(times) - min(times)) or 1.0
    span_v = (high - low) or 1.0
    pad = 2
    coords = []
    for t, v in samples:
        x = pad + (t - times[0]) / span_t * (width - 2 * pad)
        y = height - pad - (v - low) / span_v * (height - 2 * pad)
        coords.append(f"{x:.1f},{y:.1f}")
    return Sparkline(" ".join(coords), values[-1], low, high, width, height)
