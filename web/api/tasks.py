"""The queue: ``/api/tasks`` with retry and cancel, one by one or in bulk."""

from __future__ import annotations

from aiohttp import web

from bus.errors import NotFound
from bus.queue import STATUSES
from web.api.common import (
    BadParameter,
    body,
    choice,
    int_param,
    jsonable,
    optional_text,
    path_id,
    reply,
    text_param,
)
from web.keys import BUS


async def tasks(request: web.Request) -> web.Response:
    queue = text_param(request, "queue")
    status = choice(request.query.get("status"), "status", STATUSES)
    limit = int_param(request, "limit", 100, 1, 5000)
    q = request.app[BUS].queue
    rows = await q.list_tasks(queue, status, limit)
    stats = await q.stats()
    return reply({"tasks": [jsonable(r) for r in rows], "stats": [jsonable(s) for s in stats]})


async def task_detail(request: web.Request) -> web.Response:
    return reply({"task": jsonable(await request.app[BUS].queue.get(path_id(request)))})


async def task_action(request: web.Request) -> web.Response:
    task_id = path_id(request)
    action = request.match_info["action"]
    q = request.app[BUS].queue
    if action == "retry":
        if not await q.retry(task_id):
            await q.get(task_id)  # 404 if missing
            raise BadParameter(f"task {task_id} is not failed or cancelled")
        return reply({"id": task_id, "status": "queued"})
    outcome = await q.cancel(task_id)
    if outcome is None:
        raise NotFound(f"no task {task_id}")
    return reply({"id": task_id, "status": outcome})


async def tasks_bulk(request: web.Request) -> web.Response:
    action = request.match_info["action"]
    data = await body(request)
    queue = optional_text(data.get("queue"), "queue")
    q = request.app[BUS].queue
    if action == "retry":
        status = choice(data.get("status") or "failed", "status", ("failed", "cancelled"))
        count = await q.retry_all(queue, status or "failed")
    else:
        status = choice(data.get("status") or "queued", "status", ("queued", "running"))
        count = await q.cancel_all(queue, status or "queued")
    return reply({"action": action, "count": count})
