"""Agents and health: ``/healthz``, ``/api/agents/status``, ``/api/health`` and agent commands."""

from __future__ import annotations

from aiohttp import web

from bus import agents as instances
from bus import health as system
from web.api.common import (
    BadParameter,
    body,
    choice,
    jsonable,
    path_name,
    reply,
)
from web.keys import BUS


async def healthz(request: web.Request) -> web.Response:
    """For load balancers: the process is up (no database round trip)."""
    return web.json_response({"status": "ok", "service": "bgagents"})


async def agents_status(request: web.Request) -> web.Response:
    rows = await instances.status_list(request.app[BUS].pool)
    return reply({"agents": [jsonable(r) for r in rows]})


async def health(request: web.Request) -> web.Response:
    report = await system.system_summary(request.app[BUS].pool)
    return reply(report, 200 if report["healthy"] else 503)


async def agent_command(request: web.Request) -> web.Response:
    name = path_name(request)
    data = await body(request)
    command = choice(data.get("command"), "command", instances.COMMANDS)
    if command is None:
        raise BadParameter("parameter 'command' is required: pause, resume, stop or restart")
    count = await instances.command(request.app[BUS].pool, name, command)  # NotFound: 404
    return reply({"agent": name, "command": command, "instances": count})
