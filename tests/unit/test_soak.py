"""The soak benchmark's pure parts: its schedule, its audit's counting and its report."""

from __future__ import annotations

import json
import time

from agents.bench.soak import FAULTS, schedule
from agents.bench.soak_audit import audit_events, audit_tasks, judge_memory
from agents.bench.soak_procs import HARNESS
from agents.bench.soak_report import Chart, Marker, render
from agents.bench.soak_sse import SseClient
from bus.chaos import TaskOutcome


def _client(deliveries: list[tuple[str, int]]) -> SseClient:
    client = SseClient("c", "http://127.0.0.1:1", "soak", "0:0", time.monotonic())
    for cursor, event_id in deliveries:
        client.record(cursor, json.dumps({"id": event_id, "payload": {"t": time.time()}}))
    return client


def test_schedule_has_every_fault_in_the_middle_of_the_run() -> None:
    plan = schedule(1800, restart_postgres=True)
    assert [f.name for f in plan] == list(FAULTS) * 6
    assert all(360 <= f.at < 1440 for f in plan)
    assert "restart-postgres" not in {f.name for f in schedule(40, restart_postgres=False)}


def test_duplicates_and_reordering_are_counted_not_hidden() -> None:
    good = _client([("1:1", 1), ("1:2", 2), ("2:3", 3)])
    twice = _client([("1:1", 1), ("1:2", 2), ("1:2", 2), ("2:3", 3)])
    swapped = _client([("1:2", 2), ("1:1", 1), ("2:3", 3)])
    short = _client([("1:1", 1), ("2:3", 3)])
    audit = audit_events({1, 2, 3}, [1, 2, 3], [good, twice, swapped, short])
    assert [(c.missing, c.duplicates, c.out_of_order) for c in audit.clients] == [
        (0, 0, 0),
        (0, 1, 0),
        (0, 0, 1),
        (1, 0, 0),
    ]
    assert (audit.lost, audit.duplicated, audit.out_of_order) == (1, 1, 1)


def test_an_acknowledged_event_missing_from_the_log_is_lost() -> None:
    assert audit_events({1, 2}, [1], [_client([("1:1", 1)])]).lost == 1


def test_a_task_is_lost_when_missing_or_unfinished() -> None:
    def row(task_id: int, status: str) -> TaskOutcome:
        return TaskOutcome(task_id, status, 1, 3, "ok", 0.0, None, None)

    audit = audit_tasks({1, 2, 3}, [row(1, "done"), row(2, "running"), row(4, "failed")])
    assert (audit.lost, audit.not_final, audit.unacknowledged, audit.done) == (2, 1, 1, 1)


def test_memory_is_judged_from_warm_up_to_the_end() -> None:
    flat = [(t, 100.0) for t in range(0, 101, 5)]
    grows = [(t, 100.0 + t) for t in range(0, 101, 5)]
    late = [(t, 100.0) for t in range(50, 101, 5)]
    verdicts = {v.label: v for v in judge_memory({"a": flat, "b": grows, "c": late, HARNESS: grows}, 100)}
    assert verdicts["a"].ok and verdicts["a"].change == 0
    assert not verdicts["b"].ok
    assert verdicts["c"].ok and verdicts["c"].change is None
    assert verdicts[HARNESS].ok and not verdicts[HARNESS].judged


def test_report_is_html_with_an_svg_per_chart_and_each_fault_marked() -> None:
    charts = [Chart("Throughput", "per second", {"tasks": [(0, 1.0), (10, 2.0)]}), Chart("Empty", "MB", {})]
    page = render("soak", [("lost tasks", "0")], charts, 20, [Marker(5, "kill-web"), Marker(8, "<x>")])
    assert page.startswith("<!doctype html>")
    assert page.count("<svg") == 2
    assert page.count("kill-web") >= 3  # the list and one marker per chart
    assert "&lt;x&gt;" in page and "<x>" not in page
