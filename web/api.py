"""The JSON API. Every parameter is validated; a bad one gets a 400 that names it.

POST bodies may be JSON or form-encoded (htmx posts forms). Errors always come
back as JSON ``{"error": reason, "hint": ...}``, never as a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from aiohttp import web

from bus import db
from bus.errors import BgError, InvalidArgument, NotFound
from bus.queue import STATUSES, TaskFailed
from web.keys import BUS
from web.security import USER

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadParameter(InvalidArgument):
    """A request parameter has a bad value."""


def _json_error(status: int, reason: str, hint: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": reason}
    if hint:
        body["hint"] = hint
    return web.json_response(body, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map our errors to JSON with a status; log the unexpected ones."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return _json_error(exc.status, exc.reason)
    except NotFound as exc:
        return _json_error(404, exc.message, exc.hint)
    except InvalidArgument as exc:
        return _json_error(400, exc.message, exc.hint)
    except asyncpg.InvalidParameterValueError as exc:
        return _json_error(400, str(exc), getattr(exc, "hint", None))
    except BgError as exc:
        return _json_error(503, exc.message, exc.hint)
    except db.TRANSIENT_ERRORS as exc:
        logger.warning("%s %s: database unavailable: %s", request.method, request.path, exc)
        return _json_error(503, "the database is unavailable", "retry shortly")
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return _json_error(500, "internal error; see the server log")


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(f"parameter {name!r} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise BadParameter(f"parameter {name!r} must be between {low} and {high}, got {value}")
    return value


def _choice(value: str | None, name: str, choices: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    if value not in choices:
        raise BadParameter(f"parameter {name!r} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _bool(value: Any, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if str(value).lower() in ("1", "true", "yes"):
        return True
    if str(value).lower() in ("0", "false", "no"):
        return False
    raise BadParameter(f"parameter {name!r} must be true or false, got {value!r}")


def _path_id(request: web.Request, name: str = "id") -> int:
    raw = request.match_info[name]
    try:
        return int(raw)
    except ValueError:
        raise BadParameter(f"{name} must be a number, got {raw!r}") from None


async def body(request: web.Request) -> dict[str, Any]:
    """A POST body, JSON or form-encoded."""
    if not request.can_read_body:
        return {}
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except ValueError as exc:
            raise BadParameter(f"the body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadParameter("the JSON body must be an object")
        return data
    return dict(await request.post())


def _jsonable(row: Any) -> dict[str, Any]:
    out = {}
    for key, value in dict(row).items():
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, timedelta):
            value = value.total_seconds()
        out[key] = value
    return out


async def healthz(request: web.Request) -> web.Response:
    """For load balancers: the process is up (no database round trip)."""
    return web.json_response({"status": "ok", "service": "bgagents"})


async def agents_status(request: web.Request) -> web.Response:
    rows = await db.run(request.app[BUS].pool, "agent_status_all")
    return reply({"agents": [_jsonable(r) for r in rows]})


async def health(request: web.Request) -> web.Response:
    report = await request.app[BUS].state.get_system_health()
    return reply(report, 200 if report["healthy"] else 503)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_default)


def reply(data: Any, status: int = 200) -> web.Response:
    """A JSON response that also encodes dates, intervals and numerics."""
    return web.json_response(data, status=status, dumps=_dumps)


async def alerts(request: web.Request) -> web.Response:
    state = _choice(request.query.get("state"), "state", ("pending", "firing", "resolved"))
    acked = _bool(request.query.get("acked"), "acked")
    silenced = _bool(request.query.get("silenced"), "silenced")
    limit = _int(request, "limit", 200, 1, 5000)
    rows = [_jsonable(r) for r in await db.run(request.app[BUS].pool, "alerts_filtered", state, limit)]
    rows = [
        r
        for r in rows
        if (acked is None or r["acked"] == acked) and (silenced is None or r["silenced"] == silenced)
    ]
    return reply({"alerts": rows})


async def ack_alert(request: web.Request) -> web.Response:
    alert_id = _path_id(request)
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
    return reply({"alert": _jsonable(row)})


async def silences(request: web.Request) -> web.Response:
    rows = await db.run(request.app[BUS].pool, "silences_list")
    return reply({"silences": [_jsonable(r) for r in rows]})


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
    silence_id = _path_id(request)
    if not await db.run(request.app[BUS].pool, "silence_expire", silence_id):
        raise NotFound(f"no active silence {silence_id}")
    await request.app[BUS].publish("alerts", {"silence": silence_id, "ended": True})
    return reply({"id": silence_id, "ended": True})


async def metrics(request: web.Request) -> web.Response:
    metric = request.query.get("metric")
    pool = request.app[BUS].pool
    if not metric:
        names = [r["metric"] for r in await db.run(pool, "metrics_names")]
        return reply({"metrics": names})
    since_raw = request.query.get("since", "3600")
    try:
        since = datetime.now().astimezone() - timedelta(seconds=float(since_raw))
    except ValueError:
        try:
            since = datetime.fromisoformat(since_raw)
        except ValueError:
            raise BadParameter("parameter 'since' must be seconds ago or an ISO time") from None
    limit = _int(request, "limit", 5000, 1, 100000)
    rows = await db.run(pool, "metrics_series", metric, since, limit)
    return reply({"metric": metric, "samples": [_jsonable(r) for r in rows]})


async def tasks(request: web.Request) -> web.Response:
    queue = request.query.get("queue") or None
    status = _choice(request.query.get("status"), "status", STATUSES)
    limit = _int(request, "limit", 100, 1, 5000)
    q = request.app[BUS].queue
    rows = await q.list_tasks(queue, status, limit)
    stats = await q.stats()
    return reply({"tasks": [_jsonable(r) for r in rows], "stats": [_jsonable(s) for s in stats]})


async def task_detail(request: web.Request) -> web.Response:
    return reply({"task": _jsonable(await request.app[BUS].queue.get(_path_id(request)))})


async def task_action(request: web.Request) -> web.Response:
    task_id = _path_id(request)
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
    queue = data.get("queue") or None
    q = request.app[BUS].queue
    if action == "retry":
        status = _choice(data.get("status") or "failed", "status", ("failed", "cancelled"))
        count = await q.retry_all(queue, status or "failed")
    else:
        status = _choice(data.get("status") or "queued", "status", ("queued", "running"))
        count = await q.cancel_all(queue, status or "queued")
    return reply({"action": action, "count": count})


async def agent_command(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    data = await body(request)
    command = _choice(data.get("command"), "command", ("pause", "resume", "stop", "restart"))
    if command is None:
        raise BadParameter("parameter 'command' is required: pause, resume, stop or restart")
    try:
        count = await db.run(request.app[BUS].pool, "agent_command", name, command)
    except asyncpg.InvalidParameterValueError as exc:
        if "no running agent" in str(exc):
            raise NotFound(str(exc), hint=getattr(exc, "hint", None)) from exc
        raise
    return reply({"agent": name, "command": command, "instances": count})


SEARCH_QUEUE = "ai.search"  # the ai-help agent's queue; the web only enqueues and awaits


async def search(request: web.Request) -> web.Response:
    """Ask the ai-help agent, through the queue, for the best chunks."""
    query = request.query.get("q", "").strip()
    if not query:
        raise BadParameter("parameter 'q' is required")
    k = _int(request, "k", 5, 1, 100)
    bus = request.app[BUS]
    if not await ai_help_running(bus):
        return _json_error(
            503, "the ai-help agent is not running", "start it with `bgagents run ai-help` (or `bgagents up`)"
        )
    task_id = await bus.queue.enqueue(SEARCH_QUEUE, {"q": query, "k": k}, max_attempts=1, timeout=60)
    try:
        hits = await bus.queue.result(task_id, timeout=60)
    except TimeoutError:
        return _json_error(503, "the ai-help agent did not answer in 60 s", "is it busy or stuck?")
    except TaskFailed as exc:
        row = await bus.queue.get(task_id)
        return _json_error(503, f"search failed: {row['last_error'] or exc.message}")
    return reply({"query": query, "hits": hits})


ASK_QUEUE = "ai.ask"


async def ai_help_running(bus: Any) -> bool:
    """Whether an ai-help agent instance is running (anything that needs it goes via the queue)."""
    agents = await db.run(bus.pool, "agent_status_all")
    return any(a["name"] == "ai-help" and a["status"] == "running" for a in agents)


async def help_request(request: web.Request) -> web.Response:
    """Queue a question for the ai-help agent; its answer streams on the ``help`` SSE channel."""
    data = await body(request)
    question = str(data.get("question", "")).strip()
    if not question or len(question) > 4000:
        raise BadParameter("parameter 'question' must be 1 to 4000 characters")
    bus = request.app[BUS]
    if not await ai_help_running(bus):
        return _json_error(
            503, "the ai-help agent is not running", "start it with `bgagents run ai-help` (or `bgagents up`)"
        )
    cursor = await bus.events.current_cursor()
    task_id = await bus.queue.enqueue(ASK_QUEUE, {"question": question}, max_attempts=2, timeout=120)
    stream = str(request.app.router["api_events"].url_for().with_query(channels="help", after=cursor))
    return reply({"task": task_id, "stream": stream, "result": f"/api/tasks/{task_id}"}, 202)


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/healthz", healthz, name="healthz")
    r.add_get("/api/agents/status", agents_status, name="api_agents_status")
    r.add_post("/api/agents/{name}/command", agent_command, name="api_agent_command")
    r.add_get("/api/health", health, name="api_health")
    r.add_get("/api/alerts", alerts, name="api_alerts")
    r.add_post("/api/alerts/{id}/ack", ack_alert, name="api_alert_ack")
    r.add_get("/api/silences", silences, name="api_silences")
    r.add_post("/api/silences", add_silence, name="api_silence_add")
    r.add_delete("/api/silences/{id}", delete_silence, name="api_silence_delete")
    r.add_get("/api/metrics", metrics, name="api_metrics")
    r.add_get("/api/search", search, name="api_search")
    r.add_post("/api/help", help_request, name="api_help")
    r.add_get("/api/tasks", tasks, name="api_tasks")
    r.add_post("/api/tasks/{action:retry|cancel}", tasks_bulk, name="api_tasks_bulk")
    r.add_get("/api/tasks/{id}", task_detail, name="api_task")
    r.add_post("/api/tasks/{id}/{action:retry|cancel}", task_action, name="api_task_action")
