"""Alerts, acknowledgements and silences: ``/api/alerts`` and ``/api/silences``."""

from __future__ import annotations

from aiohttp import web

from bus import db
from bus.errors import NotFound
from web.api.common import (
    BadParameter,
    body,
    bool_param,
    choice,
    int_param,
    jsonable,
    path_id,
    reply,
)
from web.keys import BUS
from web.security import USER


async def alerts(request: web.Request) -> web.Response:
    state = choice(request.query.get("state"), "state", ("pending", "firing", "resolved"))
    acked = bool_param(request.query.get("acked"), "acked")
    silenced = bool_param(request.query.get("silenced"), "silenced")
    limit = int_param(request, "limit", 200, 1, 5000)
    rows = [jsonable(r) for r in await db.run(request.app[BUS].pool, "alerts_filtered", state, limit)]
    rows = [
        r
        for r in rows
        if (acked is None or r["acked"] == acked) and (silenced is None or r["silenced"] == silenced)
    ]
    return reply({"alerts": rows})


async def ack_alert(request: web.Request) -> web.Response:
    alert_id = path_id(request)
    data = await body(request)
    comment = str(data.get("comment", "")).strip()
    if len(comment) > 2000:
        raise BadParameter("parameter 'comment' must be at most 2000 characters")
    try:
        expires_in = float(data.get("expires_in", 3600))
    except (TypeError, ValueError):
        raise BadParameter(
            f"parameter 'expires_in' must be seconds, got {data.get('expires_in')!r}"
        ) from None
    if not 0 < expires_in <= 30 * 86400:
        raise BadParameter("parameter 'expires_in' must be between 1 second and 30 days")
    who = str(data.get("by") or request.get(USER) or "web")
    row = await db.run(request.app[BUS].pool, "alert_ack", alert_id, who, comment, expires_in)
    if row is None:
        if await db.run(request.app[BUS].pool, "alert_get", alert_id) is None:
            raise NotFound(f"no alert {alert_id}")
        raise BadParameter(f"alert {alert_id} is resolved; there is nothing to acknowledge")
    await request.app[BUS].publish("alerts", {"id": alert_id, "acked_by": who, "state": row["state"]})
    return reply({"alert": jsonable(row)})


async def silences(request: web.Request) -> web.Response:
    rows = await db.run(request.app[BUS].pool, "silences_list")
    return reply({"silences": [jsonable(r) for r in rows]})


async def add_silence(request: web.Request) -> web.Response:
    data = await body(request)
    matchers = data.get("matchers")
    if isinstance(matchers, str):  # a form: "agent=performance, host=web1"
        pairs = [p.split("=", 1) for p in matchers.split(",") if p.strip()]
        if any(len(p) != 2 or not p[0].strip() for p in pairs):
            raise BadParameter("parameter 'matchers' must look like label=value, label=value")
        matchers = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(matchers, dict) or not matchers:
        raise BadParameter("parameter 'matchers' must be a non-empty object of label: value")
    try:
        duration = float(data.get("duration", 3600))
    except (TypeError, ValueError):
        raise BadParameter("parameter 'duration' must be seconds") from None
    if not 0 < duration <= 90 * 86400:
        raise BadParameter("parameter 'duration' must be between 1 second and 90 days")
    silence_id = await db.run(
        request.app[BUS].pool,
        "silence_add",
        matchers,
        str(data.get("by") or "web"),
        str(data.get("comment", "")),
        duration,
    )
    await request.app[BUS].publish("alerts", {"silence": silence_id, "matchers": matchers})
    return reply({"id": silence_id}, status=201)


async def delete_silence(request: web.Request) -> web.Response:
    silence_id = path_id(request)
    if not await db.run(request.app[BUS].pool, "silence_expire", silence_id):
        raise NotFound(f"no active silence {silence_id}")
    await request.app[BUS].publish("alerts", {"silence": silence_id, "ended": True})
    return reply({"id": silence_id, "ended": True})
