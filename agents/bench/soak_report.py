"""The soak benchmark's report: one self-contained HTML file with inline SVG charts (stdlib only).

Each chart is a set of line series over the run's time axis (seconds), with
every fault drawn as a dashed vertical line labelled with its name.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

WIDTH, HEIGHT = 860, 260
LEFT, RIGHT, TOP, BOTTOM = 60, 20, 20, 40
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


@dataclass(frozen=True)
class Chart:
    """A titled chart of named series of ``(seconds, value)`` points, in ``unit``."""

    title: str
    unit: str
    series: dict[str, list[tuple[float, float]]]


@dataclass(frozen=True)
class Marker:
    """A fault at ``at`` seconds into the run."""

    at: float
    name: str


def _ticks(high: float, count: int = 5) -> list[float]:
    if high <= 0:
        return [0.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(high / step) + 1)]


def svg_chart(chart: Chart, seconds: float, markers: list[Marker]) -> str:
    """``chart`` as an inline ``<svg>`` element."""
    values = [v for points in chart.series.values() for _, v in points if math.isfinite(v)]
    top = max(values, default=1.0) * 1.1 or 1.0
    span = max(seconds, 1.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + plot_w * min(max(t, 0.0), span) / span

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{html.escape(chart.title)}">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for tick in _ticks(top):
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#eee"/>'
            f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" font-size="11" text-anchor="end">{tick:g}</text>'
        )
    for tick in _ticks(span, 8):
        parts.append(
            f'<text x="{x(tick):.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" '
            f'text-anchor="middle">{tick:g}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 6}" font-size="11" '
        'text-anchor="middle">seconds into the run</text>'
        f'<text x="14" y="{TOP + plot_h / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2})">{html.escape(chart.unit)}</text>'
    )
    for i, marker in enumerate(markers):
        mx = x(marker.at)
        parts.append(
            f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#888" '
            f'stroke-dasharray="4 3"><title>{html.escape(marker.name)} at {marker.at:.1f} s</title></line>'
            f'<text x="{mx + 3:.1f}" y="{TOP + 12 + 11 * (i % 4)}" font-size="10" fill="#555">'
            f"{html.escape(marker.name)}</text>"
        )
    for i, (name, points) in enumerate(sorted(chart.series.items())):
        colour = COLOURS[i % len(COLOURS)]
        finite = [(t, v) for t, v in points if math.isfinite(v)]
        if finite:
            path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in finite)
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}">'
                f"<title>{html.escape(name)}</title></polyline>"
            )
        parts.append(
            f'<text x="{WIDTH - RIGHT - 6}" y="{TOP + 14 + 13 * i}" font-size="11" text-anchor="end" '
            f'fill="{colour}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render(
    title: str, rows: list[tuple[str, str]], charts: list[Chart], seconds: float, markers: list[Marker]
) -> str:
    """The whole report as HTML text."""
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    faults = "".join(f"<li>{m.at:.1f} s: {html.escape(m.name)}</li>" for m in markers)
    figures = "".join(
        f"<section><h2>{html.escape(c.title)}</h2>{svg_chart(c, seconds, markers)}</section>" for c in charts
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:900px}"
        "th{text-align:left;padding-right:1em;font-weight:normal;color:#555}"
        "td{font-family:monospace}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><table>{table}</table>"
        f"<h2>Faults</h2><ol>{faults}</ol>{figures}</body></html>\n"
    )


def write_report(
    path: Path,
    title: str,
    rows: list[tuple[str, str]],
    charts: list[Chart],
    seconds: float,
    markers: list[Marker],
) -> Path:
    """Write the report to ``path`` (creating its folder) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(title, rows, charts, seconds, markers), encoding="utf-8")
    return path
