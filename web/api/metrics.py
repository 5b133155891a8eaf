"""Metric samples: ``/api/metrics``."""

from __future__ import annotations

from datetime import datetime, timedelta

from aiohttp import web

from bus import metrics as samples
from web.api.common import (
    BadParameter,
    finite_number,
    int_param,
    jsonable,
    reply,
    text_param,
)
from web.keys import BUS

MAX_SINCE_S = 3650 * 86400.0
"""The furthest back ``since`` may reach, in seconds (ten years)."""


async def metrics(request: web.Request) -> web.Response:
    metric = text_param(request, "metric")
    pool = request.app[BUS].pool
    if not metric:
        return reply({"metrics": await samples.names(pool)})
    since = _since(request.query.get("since") or "3600")
    limit = int_param(request, "limit", 5000, 1, 100000)
    rows = await samples.series(pool, metric, since, limit)
    return reply({"metric": metric, "samples": [jsonable(r) for r in rows]})


def _since(raw: str) -> datetime:
    """``since``: seconds ago (finite, at most ten years), or an ISO time."""
    if _is_number(raw):
        seconds = finite_number(raw, "since", -MAX_SINCE_S, MAX_SINCE_S)
        return datetime.now().astimezone() - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise BadParameter("parameter 'since' must be seconds ago or an ISO time") from None
    if not 1900 <= when.year <= 9000:
        raise BadParameter("parameter 'since' must be a time between the years 1900 and 9000")
    return when


def _is_number(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return True
