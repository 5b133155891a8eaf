"""HeartbeatHealthAgent: turns heartbeats into health, and health into alerts.

Health follows each instance's beat period, a grace time and consecutive
misses, as Kubernetes probes and healthchecks.io do: ``up`` while beats arrive
on time, ``late`` after period + grace, ``down`` after period × misses +
grace, and ``paused`` while the instance is paused. This agent is the only
writer of ``health``.

Alerts: ``agent_down`` for an agent name on a host with no live instance
(labels are name and host, never the instance or pid, so a restarted agent
resolves its own alert), ``queue_backlog`` when a queue's oldest ready task is
too old, and ``dead_letter_growth`` when tasks keep failing for good. Besides the
``alerts`` channel and the webhook, they go to an Alertmanager when
``alertmanager_url`` is set (see :class:`agents.builtin.alerting.AlertmanagerPush`).
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.builtin.alerting import AlertBook, AlertmanagerPush, Condition
from agents.runtime.agent import Agent
from bus import agents as instances
from bus.health import queue_health

RULES = ("agent_down", "queue_backlog", "dead_letter_growth")


def judge(status: str, beat_age: float, period: float, grace: float, misses: int) -> str:
    """The health of one instance from its status and the age of its last beat."""
    if status == "paused":
        return "paused"
    if status == "dead":
        return "down"
    if beat_age <= period + grace:
        return "up"
    if beat_age <= period * misses + grace:
        return "late"
    return "down"


class HeartbeatHealthAgent(Agent):
    name = "heartbeat"
    kind = "builtin"

    @dataclass
    class Config(Agent.Config):
        interval: float = 1.0
        grace: float = 2.0
        misses: int = 3
        alert_for: float = 2.0
        repeat_interval: float = 3600.0
        webhook_url: str | None = None
        alertmanager_url: str | None = None
        alertmanager_resend: float = 60.0
        queue_oldest_s: float = 300.0
        dead_letter_growth: int = 10

    async def setup(self) -> None:
        cfg = self.config
        pusher = None
        if cfg.alertmanager_url:
            pusher = AlertmanagerPush(cfg.alertmanager_url, cfg.alertmanager_resend, source=self.name)
        self.book = AlertBook(
            self.bus, RULES, cfg.webhook_url, cfg.repeat_interval, source=self.name, alertmanager=pusher
        )

    async def run_once(self) -> None:
        cfg = self.config
        rows = await instances.health_inputs(self.bus.pool)
        by_agent: dict[tuple[str, str], list[str]] = {}
        for row in rows:
            health = judge(
                row["status"], float(row["beat_age_s"]), row["beat_interval_s"], cfg.grace, cfg.misses
            )
            if health != row["health"]:
                await instances.set_health(self.bus.pool, row["instance_id"], health)
                self.log.info("%s on %s is %s", row["name"], row["host"], health)
            by_agent.setdefault((row["name"], row["host"]), []).append(health)
        holding = [
            Condition(
                "agent_down",
                {"agent": name, "host": host},
                "critical",
                f"agent {name} on {host} is down: no heartbeat for over {cfg.misses} periods",
                cfg.alert_for,
            )
            for (name, host), healths in by_agent.items()
            if "down" in healths and not {"up", "late", "paused"} & set(healths)
        ]
        holding += await self._queue_conditions()
        await self.book.evaluate(holding)

    async def _queue_conditions(self) -> list[Condition]:
        cfg = self.config
        found: list[Condition] = []
        for queue in await queue_health(self.bus.pool, 600.0):
            oldest = queue.oldest_s
            if oldest is not None and oldest > cfg.queue_oldest_s:
                found.append(
                    Condition(
                        "queue_backlog",
                        {"queue": queue.queue},
                        "warning",
                        f"queue {queue.queue}: oldest ready task waited {oldest:.0f}s",
                        cfg.alert_for,
                        float(oldest),
                    )
                )
            if queue.failed_recent >= cfg.dead_letter_growth:
                found.append(
                    Condition(
                        "dead_letter_growth",
                        {"queue": queue.queue},
                        "warning",
                        f"queue {queue.queue}: {queue.failed_recent} tasks failed for good in 10 minutes",
                        cfg.alert_for,
                        float(queue.failed_recent),
                    )
                )
        return found
