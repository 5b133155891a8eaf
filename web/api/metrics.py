"""Metric samples: ``/api/metrics``."""

from __future__ import annotations

from datetime import datetime, timedelta

from aiohttp import web

from bus import metrics as samples
from web.api.common import (
    BadParameter,
    int_param,
    jsonable,
    reply,
)
from web.keys import BUS


async def metrics(request: web.Request) -> web.Response:
    metric = request.query.get("metric")
    pool = request.app[BUS].pool
    if not metric:
        return reply({"metrics": await samples.names(pool)})
    since_raw = request.query.get("since", "3600")
    try:
        since = datetime.now().astimezone() - timedelta(seconds=float(since_raw))
    except ValueError:
        try:
            since = datetime.fromisoformat(since_raw)
        except ValueError:
            raise BadParameter("parameter 'since' must be seconds ago or an ISO time") from None
    limit = int_param(request, "limit", 5000, 1, 100000)
    rows = await samples.series(pool, metric, since, limit)
    return reply({"metric": metric, "samples": [jsonable(r) for r in rows]})
