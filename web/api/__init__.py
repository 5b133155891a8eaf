"""The JSON API, one module per resource; every parameter is validated and a bad one gets a 400 naming it."""

from __future__ import annotations

from aiohttp import web

from web.api import agents, ai, alerts, metrics, openapi, tasks
from web.api.common import error_middleware

__all__ = ["error_middleware", "setup_routes"]


def setup_routes(app: web.Application) -> None:
    """Add every API route, each with its name."""
    r = app.router
    r.add_get("/healthz", agents.healthz, name="healthz")
    r.add_get("/api/agents/status", agents.agents_status, name="api_agents_status")
    r.add_post("/api/agents/{name}/command", agents.agent_command, name="api_agent_command")
    r.add_get("/api/health", agents.health, name="api_health")
    r.add_get("/api/openapi.json", openapi.openapi, name="api_openapi")
    r.add_get("/api/alerts", alerts.alerts, name="api_alerts")
    r.add_post("/api/alerts/{id}/ack", alerts.ack_alert, name="api_alert_ack")
    r.add_get("/api/silences", alerts.silences, name="api_silences")
    r.add_post("/api/silences", alerts.add_silence, name="api_silence_add")
    r.add_delete("/api/silences/{id}", alerts.delete_silence, name="api_silence_delete")
    r.add_get("/api/metrics", metrics.metrics, name="api_metrics")
    r.add_get("/api/search", ai.search, name="api_search")
    r.add_post("/api/help", ai.help_request, name="api_help")
    r.add_get("/api/tasks", tasks.tasks, name="api_tasks")
    r.add_post("/api/tasks/{action:retry|cancel}", tasks.tasks_bulk, name="api_tasks_bulk")
    r.add_get("/api/tasks/{id}", tasks.task_detail, name="api_task")
    r.add_post("/api/tasks/{id}/{action:retry|cancel}", tasks.task_action, name="api_task_action")
