"""``GET /metrics`` in Prometheus's text format, built with ``prometheus-client``.

Database-backed gauges are read at scrape time, and so are the monotonic
counters that triggers keep in ``bg.counters`` (tasks finished, events
published, the claim-latency histogram: see :mod:`bus.counters`); HTTP request
durations come from a middleware histogram. Every metric is prefixed ``bgagents_``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from bus import counters
from bus import health as system
from web.keys import BROADCASTER, BUS

STATUSES = ("starting", "running", "paused", "stopping", "stopped", "dead")
HEALTHS = ("up", "late", "down", "paused")
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("prometheus_registry")
DURATION: web.AppKey[Histogram] = web.AppKey("prometheus_http_duration")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Snapshot(Collector):
    """Hands prometheus-client the families read from the database for this scrape."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        yield from self.families


async def _families(app: web.Application) -> list[Metric]:
    pool = app[BUS].pool
    status = GaugeMetricFamily(
        "bgagents_agent_status",
        "1 for the agent instance's current status",
        labels=["agent", "instance", "host", "status"],
    )
    health = GaugeMetricFamily(
        "bgagents_agent_health",
        "1 for the agent instance's current health",
        labels=["agent", "instance", "host", "health"],
    )
    age = GaugeMetricFamily(
        "bgagents_heartbeat_age_seconds",
        "Seconds since the instance's last beat",
        labels=["agent", "instance", "host"],
    )
    for row in await system.prom_agents(pool):
        ids = [row["name"], row["instance_id"], row["host"]]
        for value in STATUSES:
            status.add_metric([*ids, value], 1.0 if row["status"] == value else 0.0)
        for value in HEALTHS:
            health.add_metric([*ids, value], 1.0 if row["health"] == value else 0.0)
        age.add_metric(ids, row["beat_age_s"])
    alerts = GaugeMetricFamily(
        "bgagents_alerts", "Alerts by state and severity", labels=["state", "severity"]
    )
    for row in await system.prom_alerts(pool):
        alerts.add_metric([row["state"], row["severity"]], float(row["n"]))
    tasks = GaugeMetricFamily("bgagents_tasks", "Tasks by queue and status", labels=["queue", "status"])
    depth = GaugeMetricFamily("bgagents_queue_depth", "Queued tasks per queue", labels=["queue"])
    oldest = GaugeMetricFamily(
        "bgagents_queue_oldest_age_seconds", "Age of the oldest ready queued task", labels=["queue"]
    )
    for count in await system.queue_counts(pool):
        tasks.add_metric([count.queue, count.status], float(count.tasks))
        if count.status == "queued":
            depth.add_metric([count.queue], float(count.tasks))
            oldest.add_metric([count.queue], count.oldest_ready_s)
    events = CounterMetricFamily("bgagents_events", "Events published (the newest event id)")
    events.add_metric([], float(await system.events_total(pool)))
    clients = GaugeMetricFamily("bgagents_sse_clients", "Connected SSE clients in this process")
    clients.add_metric([], float(len(app[BROADCASTER].clients)))
    return [status, health, age, alerts, tasks, depth, oldest, events, clients, *await _counters(app)]


def _le(bound: float) -> str:
    """A bucket bound as prometheus-client writes ``le`` (``0.005``, ``1.0``, ``+Inf``)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


async def _counters(app: web.Application) -> list[Metric]:
    """The monotonic counters kept in the database (they survive pruning and restarts)."""
    kept = await counters.read(app[BUS].pool)
    finished = CounterMetricFamily(
        "bgagents_tasks_finished",
        "Tasks that reached a final status, by queue and status",
        labels=["queue", "status"],
    )
    for (queue, status), value in sorted(kept.tasks_finished.items()):
        finished.add_metric([queue, status], value)
    published = CounterMetricFamily(
        "bgagents_events_published", "Events published, by channel", labels=["channel"]
    )
    for channel, value in sorted(kept.events_published.items()):
        published.add_metric([channel], value)
    latency = HistogramMetricFamily(
        "bgagents_task_claim_latency_seconds",
        "Seconds from a task being ready (its run_at, or when it was enqueued) to its claim",
        labels=["queue"],
    )
    for histogram in kept.claim_latency:
        buckets = [(_le(bound), value) for bound, value in histogram.buckets]
        latency.add_metric([histogram.queue], buckets, histogram.total)
    return [finished, published, latency]


async def metrics(request: web.Request) -> web.Response:
    snapshot = _Snapshot()
    snapshot.families = await _families(request.app)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(snapshot)
    text = generate_latest(registry) + generate_latest(request.app[REGISTRY])
    return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def timing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Observe every request's duration by route name."""
    began = time.perf_counter()
    try:
        return await handler(request)
    finally:
        route = request.match_info.route.name or "unmatched"
        request.app[DURATION].labels(route=route, method=request.method).observe(time.perf_counter() - began)


def setup(app: web.Application) -> None:
    registry = CollectorRegistry(auto_describe=False)
    app[REGISTRY] = registry
    app[DURATION] = Histogram(
        "bgagents_http_request_duration_seconds",
        "HTTP request durations",
        ["route", "method"],
        registry=registry,
    )
    app.router.add_get("/metrics", metrics, name="metrics")
