"""Alerts, acknowledgements and silences: ``/api/alerts`` and ``/api/silences``."""

from __future__ import annotations

from aiohttp import web

from bus import alerts as book
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
    state = choice(request.query.get("state"), "state", book.STATES)
    acked = bool_param(request.query.get("acked"), "acked")
    silenced = bool_param(request.query.get("silenced"), "silenced")
    limit = int_param(request, "limit", 200, 1, 5000)
    rows = await book.list_alerts(request.app[BUS].pool, state, acked=acked, silenced=silenced, limit=limit)
    return reply({"alerts": [jsonable(r) for r in rows]})


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
    row = await book.ack(request.app[BUS].pool, alert_id, who, comment, expires_in)  # 404 or 400
    await request.app[BUS].publish("alerts", {"id": alert_id, "acked_by": who, "state": row["state"]})
    return reply({"alert": jsonable(row)})


async def silences(request: web.Request) -> web.Response:
    rows = await book.list_silences(request.app[BUS].pool)
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
    silence_id = await book.add_silence(
        request.app[BUS].pool,
        matchers,
        str(data.get("by") or "web"),
        str(data.get("comment", "")),
        duration,
    )
    await request.app[BUS].publish("alerts", {"silence": silence_id, "matchers": matchers})
    return reply({"id": silence_id}, status=201)


async def delete_silence(request: web.Request) -> web.Response:
    silence_id = path_id(request)
    await book.expire_silence(request.app[BUS].pool, silence_id)  # NotFound: 404
    await request.app[BUS].publish("alerts", {"silence": silence_id, "ended": True})
    return reply({"id": silence_id, "ended": True})
