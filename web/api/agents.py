"""Agents and health: ``/healthz``, ``/api/agents/status``, ``/api/health`` and agent commands."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from bus import db
from bus.errors import NotFound
from web.api.common import (
    BadParameter,
    body,
    choice,
    jsonable,
    reply,
)
from web.keys import BUS


async def healthz(request: web.Request) -> web.Response:
    """For load balancers: the process is up (no database round trip)."""
    return web.json_response({"status": "ok", "service": "bgagents"})


async def agents_status(request: web.Request) -> web.Response:
    rows = await db.run(request.app[BUS].pool, "agent_status_all")
    return reply({"agents": [jsonable(r) for r in rows]})


async def health(request: web.Request) -> web.Response:
    report = await request.app[BUS].state.get_system_health()
    return reply(report, 200 if report["healthy"] else 503)


async def agent_command(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    data = await body(request)
    command = choice(data.get("command"), "command", ("pause", "resume", "stop", "restart"))
    if command is None:
        raise BadParameter("parameter 'command' is required: pause, resume, stop or restart")
    try:
        count = await db.run(request.app[BUS].pool, "agent_command", name, command)
    except asyncpg.InvalidParameterValueError as exc:
        if "no running agent" in str(exc):
            raise NotFound(str(exc), hint=getattr(exc, "hint", None)) from exc
        raise
    return reply({"agent": name, "command": command, "instances": count})
