"""The end of a soak run: its audit printed line by line, the HTML report, and the verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from agents.bench.soak_audit import (
    JUDGE_MEMORY_FROM_S,
    MEMORY_TOLERANCE,
    audit_events,
    audit_tasks,
    judge_memory,
    latency_buckets,
    overall_latency,
)
from agents.bench.soak_load import Load
from agents.bench.soak_report import Chart, Marker, write_report
from agents.bench.soak_sse import SseClient
from bus.chaos import TaskOutcome

CUT_WITHIN_S = 5.0
"""A stalled stream counts as cut off when it closed within this long after the client read on."""


@dataclass
class SoakRun:
    """Everything a run recorded, for the audit and the report."""

    seconds: float
    epoch0: float
    drained: bool
    load: Load
    clients: list[SseClient]
    logged: list[int]
    rows: list[TaskOutcome]
    alerts_open: int
    alerts_raised: int
    memory: dict[str, list[tuple[float, float]]]
    faults: list[Any]
    crashes: list[str]
    notes: list[str]
    outages: list[float]
    failed_faults: list[str]


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0f}"


def _stalls(clients: list[SseClient]) -> tuple[int, int, list[str]]:
    """Stalls made, stalls cut off by the server, and a note for each."""
    made = cut = 0
    notes = []
    for c in clients:
        for s in c.stalls:
            made += 1
            if s.ended is not None and s.cut_at is not None and s.cut_at - s.ended <= CUT_WITHIN_S:
                cut += 1
                notes.append(f"{c.name} cut off during its stall at {s.began:.0f}-{s.ended:.0f} s")
            else:
                notes.append(f"{c.name} not cut off during its stall at {s.began:.0f} s")
    return made, cut, notes


def finish(run: SoakRun, path: Path) -> bool:
    """Print the audit, write the report to ``path``; True when nothing was lost."""
    tasks = audit_tasks(set(run.load.task_ids), run.rows)
    events = audit_events(run.load.event_ids, run.logged, run.clients)
    memory = judge_memory(run.memory, run.seconds)
    latency = overall_latency(run.rows)
    stalls, cut, stall_notes = _stalls(run.clients)
    judged = run.seconds >= JUDGE_MEMORY_FROM_S
    memory_bad = [m for m in memory if not m.ok]
    failures = []
    if tasks.lost or tasks.not_final:
        failures.append(f"{tasks.lost} tasks lost, {tasks.not_final} not finished")
    if events.lost or events.duplicated or events.out_of_order:
        failures.append(
            f"events: {events.lost} lost, {events.duplicated} duplicated, {events.out_of_order} out of order"
        )
    if any(c.resets for c in events.clients):
        failures.append("a client was sent a reset")
    if run.alerts_open:
        failures.append(f"{run.alerts_open} alerts stuck")
    if stalls and cut < stalls:
        failures.append(f"{stalls - cut} stalled clients were not cut off")
    if run.failed_faults:
        failures.append(f"faults not injected: {', '.join(run.failed_faults)}")
    if judged and memory_bad:
        failures.append(f"memory grew over {MEMORY_TOLERANCE:.0%} in {len(memory_bad)} processes")
    rows = [
        ("tasks enqueued", f"{tasks.acknowledged} acknowledged ({run.load.task_errors} calls failed)"),
        ("tasks done / failed", f"{tasks.done} / {tasks.failed} ({tasks.doomed_failed} of {tasks.doomed} "
                                f"planned to fail; {tasks.unexpected_failed} others ran out of attempts)"),
        ("tasks not finished", str(tasks.not_final)),
        ("lost tasks", str(tasks.lost)),
        ("unacknowledged tasks", f"{tasks.unacknowledged} (committed while their call failed; all finished)"
                                 if tasks.unacknowledged else "0"),
        ("events published", f"{events.acknowledged} acknowledged, {events.logged} in the log "
                             f"({run.load.event_errors} publish calls failed)"),
        ("SSE clients", f"{len(events.clients)}, {sum(c.connects for c in events.clients)} connections "
                        "(each resumed by Last-Event-ID)"),
        ("lost events", str(events.lost)),
        ("duplicated events", str(events.duplicated)),
        ("out-of-order events", str(events.out_of_order)),
        ("stalled clients", f"{cut} of {stalls} cut off and resumed by cursor"),
        ("alerts", f"{run.alerts_raised} raised, {run.alerts_open} still pending or firing"),
        ("heartbeats", f"{run.load.beats} ({run.load.beat_errors} failed while the server was away)"),
        ("task latency p50 / p99", f"enqueue->start {_ms(latency['start_p50_ms'])} / "
                                   f"{_ms(latency['start_p99_ms'])} ms, enqueue->done "
                                   f"{_ms(latency['done_p50_ms'])} / {_ms(latency['done_p99_ms'])} ms"),
        ("postgres outages", ", ".join(f"{s:.1f} s" for s in run.outages) or "none"),
        ("unexpected exits", "; ".join(run.crashes) or "none"),
    ]  # fmt: skip
    for m in memory:
        change = m.change
        if change is None:
            value = m.note
        else:
            value = f"{m.warm_mb:.0f} MB after warm-up -> {m.end_mb:.0f} MB at the end ({change:+.1%})"
            value += f"; {m.note}" if m.note else ("" if m.ok else " OVER")
        rows.append((f"memory {m.label}", value))
    if not judged:
        rows.append(
            ("memory verdict", f"reported, not judged (runs under {JUDGE_MEMORY_FROM_S / 60:.0f} min)")
        )
    else:
        verdict = f"flat (within {MEMORY_TOLERANCE:.0%})" if not memory_bad else "GREW"
        rows.append(("memory verdict", f"{verdict}; PostgreSQL's processes are not sampled (they restart)"))
    rows.append(("drained", "yes" if run.drained else "no: gave up waiting"))
    rows.append(("audit", "PASS" if not failures else "FAIL: " + "; ".join(failures)))
    width = max(len(k) for k, _ in rows)
    click.echo("audit:")
    for key, value in rows:
        click.echo(f"  {key:<{width}}  {value}")
    for note in [*stall_notes, *run.notes]:
        click.echo(f"  note: {note}")
    buckets = latency_buckets(run.rows, run.epoch0, max(2.0, run.seconds / 60))
    delivered = _delivery_rate(run.clients, max(2.0, run.seconds / 60))
    charts = [
        Chart(
            "Throughput",
            "per second",
            {"tasks finished": buckets["finished/s"], "events delivered": delivered},
        ),
        Chart("Task latency", "ms", {k: v for k, v in buckets.items() if k != "finished/s"}),
        Chart("Memory (RSS)", "MB", run.memory),
    ]
    markers = [Marker(f.at, f.name) for f in run.faults]
    written = write_report(path, "bgagents bench soak", rows, charts, run.seconds, markers)
    click.echo(f"report: {written}")
    return not failures


def _delivery_rate(clients: list[SseClient], bucket_s: float) -> list[tuple[float, float]]:
    """SSE deliveries per second over all clients, by bucket of arrival time."""
    counts: dict[int, int] = {}
    for c in clients:
        for t in c.arrivals:
            counts[int(t // bucket_s)] = counts.get(int(t // bucket_s), 0) + 1
    return [((i + 0.5) * bucket_s, n / bucket_s) for i, n in sorted(counts.items())]
