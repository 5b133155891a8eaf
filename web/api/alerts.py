"""Alerts, acknowledgements and silences: ``/api/alerts`` and ``/api/silences``."""

from __future__ import annotations

from aiohttp import web

from bus import alerts as book
from web.api.common import (
    MAX_NAME_CHARS,
    BadParameter,
    body,
    bool_param,
    choice,
    finite_number,
    int_param,
    json_type,
    jsonable,
    path_id,
    reply,
    text,
)
from web.keys import BUS
from web.security import USER

MAX_MATCHERS = 50
"""The most labels one silence may match on."""
DAY = 86400.0


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
    comment = text(data.get("comment"), "comment")
    expires_in = finite_number(data.get("expires_in", 3600), "expires_in", 1, 30 * DAY)
    who = text(data.get("by"), "by", MAX_NAME_CHARS) or str(request.get(USER) or "web")
    row = await book.ack(request.app[BUS].pool, alert_id, who, comment, expires_in)  # 404 or 400
    await request.app[BUS].publish("alerts", {"id": alert_id, "acked_by": who, "state": row["state"]})
    return reply({"alert": jsonable(row)})


async def silences(request: web.Request) -> web.Response:
    rows = await book.list_silences(request.app[BUS].pool)
    return reply({"silences": [jsonable(r) for r in rows]})


async def add_silence(request: web.Request) -> web.Response:
    data = await body(request)
    matchers = _matchers(data.get("matchers"))
    duration = finite_number(data.get("duration", 3600), "duration", 1, 90 * DAY)
    silence_id = await book.add_silence(
        request.app[BUS].pool,
        matchers,
        text(data.get("by"), "by", MAX_NAME_CHARS) or "web",
        text(data.get("comment"), "comment"),
        duration,
    )
    await request.app[BUS].publish("alerts", {"silence": silence_id, "matchers": matchers})
    return reply({"id": silence_id}, status=201)


def _matchers(raw: object) -> dict[str, str]:
    """``{label: value}`` from JSON, or from a form's ``"agent=performance, host=web1"``."""
    if isinstance(raw, str):  # a form
        pairs = [p.split("=", 1) for p in raw.split(",") if p.strip()]
        if any(len(p) != 2 or not p[0].strip() for p in pairs):
            raise BadParameter("parameter 'matchers' must look like label=value, label=value")
        raw = {k.strip(): v.strip() for k, v in pairs}
    matchers = json_type(raw, "matchers", dict)
    if not matchers or len(matchers) > MAX_MATCHERS:
        raise BadParameter(f"parameter 'matchers' must be an object of 1 to {MAX_MATCHERS} label: value")
    for label, value in matchers.items():
        if not label or len(label) > MAX_NAME_CHARS:
            raise BadParameter(
                f"parameter 'matchers' has a label that is empty or over {MAX_NAME_CHARS} characters"
            )
        text(value, f"matchers.{label}", MAX_NAME_CHARS)
    return matchers


async def delete_silence(request: web.Request) -> web.Response:
    silence_id = path_id(request)
    await book.expire_silence(request.app[BUS].pool, silence_id)  # NotFound: 404
    await request.app[BUS].publish("alerts", {"silence": silence_id, "ended": True})
    return reply({"id": silence_id, "ended": True})
