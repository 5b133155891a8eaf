"""The soak benchmark's audit: tasks, events, alerts and memory judged from what was recorded.

Every count is exact: a task is lost when ``bg.enqueue`` acknowledged its id
and its row is missing or not finished; an event is lost for a client when the
log holds it after the run's start cursor and the client never got it; a
duplicate is a second delivery of the same id to one client, counted, never
hidden.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from agents.bench.common import percentile
from agents.bench.soak_procs import HARNESS
from agents.bench.soak_sse import SseClient
from bus.chaos import TaskOutcome

FINAL = ("done", "failed", "cancelled")
MEMORY_TOLERANCE = 0.10
"""Most an RSS may grow from its level after warm-up to the end of the run."""
JUDGE_MEMORY_FROM_S = 300.0
"""Runs shorter than this report memory but do not fail on it (a process is still warming up)."""


@dataclass
class TaskAudit:
    """The tasks' outcome against what was acknowledged."""

    acknowledged: int
    done: int = 0
    failed: int = 0
    doomed_failed: int = 0
    doomed: int = 0
    unexpected_failed: int = 0
    not_final: int = 0
    lost: int = 0
    unacknowledged: int = 0


def audit_tasks(acknowledged: set[int], rows: list[TaskOutcome]) -> TaskAudit:
    """Compare the acknowledged ids with the final rows."""
    by_id = {r.id: r for r in rows}
    audit = TaskAudit(acknowledged=len(acknowledged))
    audit.lost = sum(1 for i in acknowledged if i not in by_id)
    audit.unacknowledged = sum(1 for i in by_id if i not in acknowledged)
    for row in rows:
        if row.status not in FINAL:
            audit.not_final += 1
        elif row.status == "done":
            audit.done += 1
        else:
            audit.failed += 1
            if row.mode == "doomed":
                audit.doomed_failed += 1
            else:
                audit.unexpected_failed += 1
        if row.mode == "doomed":
            audit.doomed += 1
    audit.lost += sum(1 for i in acknowledged if i in by_id and by_id[i].status not in FINAL)
    return audit


@dataclass
class ClientAudit:
    """One SSE client's deliveries against the event log."""

    name: str
    received: int
    missing: int
    duplicates: int
    out_of_order: int
    resets: int
    connects: int


@dataclass
class EventAudit:
    """Every client's deliveries, and the log against what was acknowledged."""

    acknowledged: int
    logged: int
    unacknowledged_logged: int
    acknowledged_missing: int
    clients: list[ClientAudit] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.acknowledged_missing + sum(c.missing for c in self.clients)

    @property
    def duplicated(self) -> int:
        return sum(c.duplicates for c in self.clients)

    @property
    def out_of_order(self) -> int:
        return sum(c.out_of_order for c in self.clients)


def audit_events(acknowledged: set[int], logged: list[int], clients: list[SseClient]) -> EventAudit:
    """Check that every logged event reached every client exactly once and in cursor order."""
    log = set(logged)
    audit = EventAudit(
        acknowledged=len(acknowledged),
        logged=len(log),
        unacknowledged_logged=len(log - acknowledged),
        acknowledged_missing=len(acknowledged - log),
    )
    for c in clients:
        audit.clients.append(
            ClientAudit(
                c.name, len(c.ids), len(log - c.seen), c.duplicates, c.out_of_order, c.resets, c.connects
            )
        )
    return audit


@dataclass(frozen=True)
class MemoryVerdict:
    """One process's RSS after warm-up and at the end (MB), or why it was not judged."""

    label: str
    warm_mb: float | None
    end_mb: float | None
    note: str = ""
    judged: bool = True

    @property
    def change(self) -> float | None:
        if self.warm_mb is None or self.end_mb is None or self.warm_mb == 0:
            return None
        return (self.end_mb - self.warm_mb) / self.warm_mb

    @property
    def ok(self) -> bool:
        change = self.change
        return not self.judged or change is None or change <= MEMORY_TOLERANCE


def judge_memory(series: dict[str, list[tuple[float, float]]], seconds: float) -> list[MemoryVerdict]:
    """Each process's median RSS just after warm-up (20-30 % of the run) against the last 10 %."""
    verdicts = []
    for label, points in sorted(series.items()):
        warm = [mb for t, mb in points if 0.2 * seconds <= t <= 0.3 * seconds]
        end = [mb for t, mb in points if t >= 0.9 * seconds]
        if not warm or not end:
            verdicts.append(MemoryVerdict(label, None, None, "replaced by a fault: not judged"))
            continue
        if label == HARNESS:
            note = "the harness keeps every delivery it audits: not judged"
            verdicts.append(
                MemoryVerdict(label, statistics.median(warm), statistics.median(end), note, False)
            )
            continue
        verdicts.append(MemoryVerdict(label, statistics.median(warm), statistics.median(end)))
    return verdicts


def latency_buckets(
    rows: list[TaskOutcome], epoch0: float, bucket_s: float
) -> dict[str, list[tuple[float, float]]]:
    """Per bucket of finishing time: tasks finished per second, and enqueue-to-start/done p50 and p99 (ms)."""
    buckets: dict[int, list[TaskOutcome]] = {}
    for row in rows:
        if row.finished is not None:
            buckets.setdefault(int((row.finished - epoch0) // bucket_s), []).append(row)
    out: dict[str, list[tuple[float, float]]] = {
        "finished/s": [],
        "start p50": [],
        "start p99": [],
        "done p50": [],
        "done p99": [],
    }
    for index in sorted(buckets):
        group = buckets[index]
        x = (index + 0.5) * bucket_s
        out["finished/s"].append((x, len(group) / bucket_s))
        clean = [r for r in group if r.mode == "ok" and r.attempts == 1 and r.status == "done"]
        starts = [1000 * (r.started - r.created) for r in clean if r.started is not None]
        dones = [1000 * (r.finished - r.created) for r in clean if r.finished is not None]
        if starts:
            out["start p50"].append((x, percentile(starts, 0.5)))
            out["start p99"].append((x, percentile(starts, 0.99)))
        if dones:
            out["done p50"].append((x, percentile(dones, 0.5)))
            out["done p99"].append((x, percentile(dones, 0.99)))
    return out


def overall_latency(rows: list[TaskOutcome]) -> dict[str, float]:
    """Enqueue-to-start and enqueue-to-done p50/p99 (ms) of the tasks that ran once and succeeded."""
    clean = [r for r in rows if r.mode == "ok" and r.attempts == 1 and r.status == "done"]
    starts = [1000 * (r.started - r.created) for r in clean if r.started is not None]
    dones = [1000 * (r.finished - r.created) for r in clean if r.finished is not None]
    return {
        "start_p50_ms": percentile(starts, 0.5),
        "start_p99_ms": percentile(starts, 0.99),
        "done_p50_ms": percentile(dones, 0.5),
        "done_p99_ms": percentile(dones, 0.99),
    }
