"""PerformanceMonitor: host and agent-process metrics with psutil, thresholds, anomalies.

Every ``interval`` seconds it samples the host (CPU, load, memory, swap, disk
usage and I/O, network) and every agent process on this host (CPU and RSS),
and stores the samples in ``bg.performance_metrics``. Thresholds from
``monitoring.yml`` raise alerts through the shared alert machinery. Anomalies
come from an exponentially weighted mean and variance per metric: after a
warm-up, a sample more than ``z`` standard deviations from the mean is
anomalous, and ``consecutive`` anomalous samples in a row raise an alert.
While an agent is down, its own resource alerts are inhibited.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from agents.builtin.alerting import AlertBook, Condition
from agents.runtime.agent import Agent
from bus import agents as instances
from bus import health, metrics
from bus.metrics import Sample

RULES = ("threshold", "anomaly")


@dataclass
class Ewma:
    """Exponentially weighted mean and variance of one metric, with a z-score."""

    alpha: float
    mean: float = 0.0
    var: float = 0.0
    n: int = 0
    streak: int = 0

    def update(self, x: float, z_limit: float | None = None, warmup: int = 0) -> float:
        """Add a sample; returns its z-score against the state before it (0 while new).

        An anomalous sample (past ``warmup``, ``|z| >= z_limit``) moves the baseline
        only as much as a borderline one would: otherwise the spike inflates the
        variance and hides the samples after it. The spread has a floor, so a jump
        after a flat stretch still counts.
        """
        if self.n == 0:
            self.mean, self.n = x, 1
            return 0.0
        std = max(math.sqrt(self.var), 0.05 * abs(self.mean), 0.5)
        z = (x - self.mean) / std
        diff = x - self.mean
        if z_limit is not None and self.n > warmup and abs(z) >= z_limit:
            # Learn from it only as a borderline sample: a spike can't hide the next
            # samples, and a lasting level shift still becomes the new normal.
            diff = math.copysign(z_limit * std, diff)
        incr = self.alpha * diff
        self.mean += incr
        self.var = (1 - self.alpha) * (self.var + diff * incr)
        self.n += 1
        return z


class MetricRules:
    """Turns samples into alert conditions: thresholds, and an :class:`Ewma` anomaly tracker per metric.

    ``thresholds`` maps a metric to ``[warning, critical]`` limits; ``anomaly`` holds
    ``metrics`` (the host metrics to track), ``alpha``, ``z``, ``warmup`` and
    ``consecutive``, as in ``monitoring.yml``. The trackers learn from every
    :meth:`conditions` call, so one instance follows one host over time.
    """

    def __init__(
        self, host: str, thresholds: dict[str, list[float]], anomaly: dict[str, Any], alert_for: float
    ) -> None:
        self.host = host
        self.thresholds = thresholds
        self.anomaly = anomaly
        self.alert_for = alert_for
        self.trackers: dict[str, Ewma] = {}
        """The anomaly state: one tracker per host metric seen so far that ``anomaly`` tracks."""

    def conditions(self, rows: Sequence[tuple[str, str | None, str, float]]) -> list[Condition]:
        """The conditions that hold for these ``(source, instance_id, metric, value)`` samples."""
        anomaly = self.anomaly
        found: list[Condition] = []
        for source, _instance, metric, value in rows:
            labels = {"metric": metric, "host": self.host}
            if source != "host":
                labels["agent"] = source
            limits = self.thresholds.get(metric)
            if limits and value >= limits[0]:
                severity = "critical" if len(limits) > 1 and value >= limits[1] else "warning"
                found.append(
                    Condition(
                        "threshold",
                        labels,
                        severity,
                        f"{metric} on {self.host} is {value:.1f} (limit {limits[0]})",
                        self.alert_for,
                        value,
                    )
                )
            if metric in anomaly.get("metrics", []) and source == "host":
                tracker = self.trackers.setdefault(metric, Ewma(float(anomaly.get("alpha", 0.1))))
                limit, warmup = float(anomaly.get("z", 4.0)), int(anomaly.get("warmup", 30))
                judged = tracker.n > warmup
                z = tracker.update(value, limit, warmup)
                tracker.streak = tracker.streak + 1 if judged and abs(z) >= limit else 0
                if tracker.streak >= int(anomaly.get("consecutive", 3)):
                    found.append(
                        Condition(
                            "anomaly",
                            labels,
                            "warning",
                            f"{metric} on {self.host} is unusual: {value:.1f} "
                            f"(z = {z:.1f} against a mean of {tracker.mean:.1f})",
                            0.0,
                            value,
                        )
                    )
        return found


def sample_host(state: dict[str, Any], disk_path: str = "/") -> dict[str, float]:
    """One sample of the host; rates use the previous sample kept in ``state``."""
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    load1, load5, load15 = os.getloadavg()
    values = {
        "host.cpu_percent": psutil.cpu_percent(None),
        "host.load1": load1,
        "host.load5": load5,
        "host.load15": load15,
        "host.memory_percent": vm.percent,
        "host.memory_used_bytes": float(vm.used),
        "host.swap_percent": swap.percent,
        "host.disk_percent": psutil.disk_usage(disk_path).percent,
    }
    now = time.monotonic()
    io, net = psutil.disk_io_counters(), psutil.net_io_counters()
    counters = {
        "host.disk_read_bytes_per_s": float(io.read_bytes) if io else 0.0,
        "host.disk_write_bytes_per_s": float(io.write_bytes) if io else 0.0,
        "host.net_sent_bytes_per_s": float(net.bytes_sent),
        "host.net_recv_bytes_per_s": float(net.bytes_recv),
    }
    previous = state.get("counters")
    if previous is not None:
        elapsed = max(now - previous[0], 1e-6)
        for key, value in counters.items():
            values[key] = max(0.0, (value - previous[1][key]) / elapsed)
    state["counters"] = (now, counters)
    return values


class PerformanceMonitor(Agent):
    name = "performance"
    kind = "builtin"

    @dataclass
    class Config(Agent.Config):
        interval: float = 5.0
        thresholds: dict[str, list[float]] = field(
            default_factory=lambda: {
                "host.cpu_percent": [85, 95],
                "host.memory_percent": [85, 95],
                "host.disk_percent": [85, 95],
                "host.swap_percent": [50, 80],
            }
        )
        alert_for: float = 30.0
        anomaly: dict[str, Any] = field(
            default_factory=lambda: {
                "metrics": ["host.cpu_percent", "host.memory_percent", "host.load1"],
                "alpha": 0.1,
                "z": 4.0,
                "warmup": 30,
                "consecutive": 3,
            }
        )
        repeat_interval: float = 3600.0
        webhook_url: str | None = None

    async def setup(self) -> None:
        self.host = socket.gethostname()
        self.book = AlertBook(
            self.bus, RULES, self.config.webhook_url, self.config.repeat_interval, source=self.name
        )
        self._state: dict[str, Any] = {}
        self._processes: dict[int, psutil.Process] = {}
        self.rules = MetricRules(
            self.host, self.config.thresholds, self.config.anomaly, self.config.alert_for
        )
        psutil.cpu_percent(None)

    async def run_once(self) -> None:
        host_values = sample_host(self._state)
        host_values["queue.depth"] = await health.queue_depth_total(self.bus.pool)
        rows: list[Sample] = [Sample("host", None, metric, value) for metric, value in host_values.items()]
        agents = await instances.on_host(self.bus.pool, self.host)
        for agent in agents:
            proc = self._process(agent["pid"])
            if proc is None:
                continue
            try:
                with proc.oneshot():
                    rows.append(
                        Sample(
                            agent["name"], agent["instance_id"], "agent.cpu_percent", proc.cpu_percent(None)
                        )
                    )
                    rows.append(
                        Sample(
                            agent["name"],
                            agent["instance_id"],
                            "agent.rss_bytes",
                            float(proc.memory_info().rss),
                        )
                    )
            except psutil.Error:
                self._processes.pop(agent["pid"], None)
        await metrics.insert(self.bus.pool, self.host, rows)
        holding = self.rules.conditions(rows)
        down = await self._down_agents()
        inhibited = {c.fingerprint for c in holding if c.labels.get("agent") in down}
        await self.book.evaluate(holding, inhibited)

    def _process(self, pid: int) -> psutil.Process | None:
        proc = self._processes.get(pid)
        if proc is None:
            try:
                proc = psutil.Process(pid)
                proc.cpu_percent(None)
            except psutil.Error:
                return None
            self._processes[pid] = proc
        return proc

    async def _down_agents(self) -> set[str]:
        return {r["name"] for r in await instances.status_list(self.bus.pool) if r["health"] == "down"}
