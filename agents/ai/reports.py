"""System reports: what changed, anomalies, alerts, slow queues, and what to do.

Every recommendation names the figure it rests on, so a reader can check it.
The ai-help agent writes one every ``report_interval`` seconds and on demand
(``bgagents report``); each is stored in ``bg.reports`` and published on the
``reports`` channel.
"""

from __future__ import annotations

from typing import Any

SLOW_QUEUE_S = 60
HIGH_PERCENT = 85.0


def _metric(facts: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((m for m in facts.get("metrics") or [] if m["metric"] == name), None)


def recommendations(facts: dict[str, Any]) -> list[str]:
    """Concrete advice, each grounded in a cited figure."""
    advice = []
    for agent in facts.get("unhealthy_agents") or []:
        advice.append(
            f"Restart {agent['name']} on {agent['host']} (health {agent['health']}, status "
            f"{agent['status']}); under `bgagents up` the supervisor retries it, under a Procfile "
            "check the process manager's log."
        )
    for name, label in (
        ("host.cpu_percent", "CPU"),
        ("host.memory_percent", "memory"),
        ("host.disk_percent", "disk"),
        ("host.swap_percent", "swap"),
    ):
        m = _metric(facts, name)
        if m and float(m["avg"]) >= HIGH_PERCENT:
            advice.append(
                f"{label} averaged {m['avg']}% (max {m['max']}%, {m['samples']} samples): "
                "add capacity or move work off this host."
            )
    for q in facts.get("queues") or []:
        if q["oldest_s"] is not None and float(q["oldest_s"]) > SLOW_QUEUE_S:
            advice.append(
                f"Queue {q['queue']}: {q['queued']} waiting, the oldest for {q['oldest_s']} s: "
                f"add workers (`bgagents worker --queue {q['queue']} --concurrency N`)."
            )
        if q["failed"]:
            advice.append(
                f"Queue {q['queue']}: {q['failed']} task(s) failed for good: read one with "
                f"`bgagents tasks --queue {q['queue']} --status failed`, fix, then "
                f"`bgagents tasks retry --all --queue {q['queue']}`."
            )
    return advice


def write(facts: dict[str, Any], period_s: int) -> str:
    """The report's text."""
    hours = period_s / 3600
    lines = [f"System report for the last {hours:g} hour(s)."]
    unhealthy = facts.get("unhealthy_agents") or []
    lines.append(
        f"Agents: {facts.get('live_agents', 0)} live; "
        + (
            ", ".join(f"{a['name']} on {a['host']} is {a['health']}" for a in unhealthy)
            if unhealthy
            else "all up"
        )
        + "."
    )
    alerts = facts.get("alerts") or []
    firing = [a for a in alerts if a["state"] == "firing"]
    anomalies = [a for a in alerts if a["rule"] == "anomaly"]
    lines.append(
        f"Alerts: {len(firing)} firing, {len(alerts)} raised or firing in the period"
        + (f", {len(anomalies)} anomaly alert(s)" if anomalies else "")
        + "."
    )
    for a in firing[:5]:
        lines.append(f"  - [{a['severity']}] {a['summary']}")
    metrics = facts.get("metrics") or []
    if metrics:
        lines.append(
            "Host: " + "; ".join(f"{m['metric']} avg {m['avg']} max {m['max']}" for m in metrics) + "."
        )
    queues = facts.get("queues") or []
    if queues:
        lines.append(
            "Queues: "
            + "; ".join(
                f"{q['queue']} {q['queued']} waiting (oldest {q['oldest_s'] or 0} s), {q['failed']} failed"
                for q in queues
            )
            + "."
        )
    advice = recommendations(facts)
    lines.append("Recommendations:" if advice else "Recommendations: none; nothing needs attention.")
    lines += [f"  {n}. {a}" for n, a in enumerate(advice, 1)]
    return "\n".join(lines)
