"""Dashboard pages and their live regions.

Each live region has one ``<region>_context()`` coroutine, shared by the page
that includes it and by ``GET /partials/<region>``, which HTMX re-fetches when
the dashboard's coalesced SSE stream names the region (and every 30 s as a
fallback). Pages render the current event cursor into their ``sse-connect``
URL, so nothing falls between the render and the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bus import agents as instances
from bus import ai, metrics
from bus import alerts as book
from bus import health as system
from bus import knowledge as knowledge_base
from bus import reports as report_book
from bus.errors import BgError
from bus.queue import STATUSES
from web.api.common import BadParameter, choice, path_id
from web.charts import sparkline
from web.keys import BUS, SETTINGS
from web.security import csrf_token

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
VENDOR = HERE / "static" / "vendor"
"""The npm assets a built package ships (copied there by web/packaging/assets_backend.py)."""
ASSETS = VENDOR if (VENDOR / "htmx.org").is_dir() else HERE / "node_modules"
"""Where ``/static/vendor`` comes from: the packaged copy when present, else a checkout's node_modules."""
Context = dict[str, Any]


async def health_context(request: web.Request) -> Context:
    return {"report": await system.system_summary(request.app[BUS].pool)}


async def agents_context(request: web.Request) -> Context:
    """Live and dead instances; stopped ones only with ``?all=1``."""
    show_all = request.query.get("all") == "1"
    rows = await instances.status_list(request.app[BUS].pool)
    return {"agents": [r for r in rows if show_all or r["status"] != "stopped"], "show_all": show_all}


async def alerts_context(request: web.Request) -> Context:
    state = choice(request.query.get("state"), "state", book.STATES)
    if request.match_info.route.name in ("overview", "partial_alerts") and state is None:
        state = "firing" if request.query.get("all") is None else None
    rows = await book.list_alerts(request.app[BUS].pool, state, limit=200)
    silences = await book.list_silences(request.app[BUS].pool)
    return {"alerts": rows, "silences": silences, "state": state}


async def charts_context(request: web.Request) -> Context:
    pool = request.app[BUS].pool
    charts = []
    for title, metric, unit, ceiling in (
        ("CPU", "host.cpu_percent", "%", 100.0),
        ("Memory", "host.memory_percent", "%", 100.0),
        ("Queue depth", "queue.depth", " tasks", None),
    ):
        points = await metrics.page_series(pool, metric, 900.0, "host")
        charts.append({"title": title, "unit": unit, "line": sparkline(points, ceiling=ceiling)})
    return {"charts": charts}


async def tasks_context(request: web.Request) -> Context:
    queue = request.query.get("queue") or None
    status = choice(request.query.get("status"), "status", STATUSES)
    q = request.app[BUS].queue
    stats = await q.stats()
    queues: dict[str, dict[str, Any]] = {}
    for s in stats:
        entry = queues.setdefault(s["queue"], {"queue": s["queue"], "oldest": None})
        entry[s["status"]] = s["tasks"]
        if s["status"] == "queued" and s["oldest_ready_age_s"] is not None:
            entry["oldest"] = float(s["oldest_ready_age_s"])
    return {
        "queues": sorted(queues.values(), key=lambda e: e["queue"]),
        "tasks": await system.recent_tasks(request.app[BUS].pool, queue, status, 100),
        "queue": queue,
        "status": status,
        "statuses": STATUSES,
    }


async def events_context(request: web.Request) -> Context:
    channel = request.query.get("channel") or None
    if channel is not None and (len(channel) > 100 or not all(c.isalnum() or c in "_.:-" for c in channel)):
        raise BadParameter(f"parameter 'channel' is not a channel name: {channel!r}")
    return {"events": await system.recent_events(request.app[BUS].pool, channel, 50), "channel": channel}


async def heartbeats_context(request: web.Request) -> Context:
    name = request.match_info.get("name") or request.query.get("name", "")
    pool = request.app[BUS].pool
    beats = await metrics.heartbeat_series(pool, name, 120)
    running = [r for r in await instances.status_list(pool) if r["name"] == name]
    return {
        "name": name,
        "beats": beats,
        "instances": running,
        "line": sparkline([(b["ts"].timestamp(), float(b["cpu_percent"] or 0)) for b in reversed(beats)]),
    }


async def report_context(request: web.Request) -> Context:
    try:
        row = await report_book.latest(request.app[BUS].pool)
    except BgError:  # the database is away or the schema not ready: no report panel
        row = None
    return {"report_row": row}


async def ask(request: web.Request) -> web.Response:
    """The Ask panel: queue the question, wait for the answer, render it with its sources."""
    form = await request.post()
    question = str(form.get("question", "")).strip()
    bus = request.app[BUS]
    limit = request.app[SETTINGS].max_question_chars
    context: Context = {"question": question[:limit], "answer": None, "error": None}
    if not question:
        context["error"] = "Ask a question first."
    elif len(question) > limit:
        context["error"] = (
            f"The question is too long: {len(question)} characters, at most {limit} "
            "(BGAGENTS_MAX_QUESTION_CHARS)."
        )
    elif not await ai.is_ai_help_running(bus.pool):
        context["error"] = "The ai-help agent is not running (start it with bgagents up)."
    else:
        task_id = await bus.queue.enqueue(
            ai.ASK_QUEUE, ai.AskRequest(question).to_dict(), max_attempts=2, timeout=120
        )
        try:
            context["answer"] = await bus.queue.result(task_id, timeout=120)
        except (TimeoutError, BgError) as exc:
            context["error"] = f"No answer: {exc}"
    return aiohttp_jinja2.render_template("fragments/answer.html", request, context)


REGIONS: dict[str, Callable[[web.Request], Awaitable[Context]]] = {
    "health": health_context,
    "agents": agents_context,
    "alerts": alerts_context,
    "charts": charts_context,
    "tasks": tasks_context,
    "events": events_context,
    "heartbeats": heartbeats_context,
    "report": report_context,
}


async def _page(request: web.Request, template: str, regions: tuple[str, ...], **extra: Any) -> web.Response:
    context: Context = {"page": template, "cursor": await request.app[BUS].events.current_cursor()}
    for region in regions:
        context.update(await REGIONS[region](request))
    context.update(extra)
    return aiohttp_jinja2.render_template(f"pages/{template}.html", request, context)


async def overview(request: web.Request) -> web.Response:
    return await _page(request, "overview", ("health", "agents", "alerts", "charts", "report"))


async def agent_page(request: web.Request) -> web.Response:
    return await _page(request, "agent", ("heartbeats",))


async def alerts_page(request: web.Request) -> web.Response:
    return await _page(request, "alerts", ("alerts",))


async def tasks_page(request: web.Request) -> web.Response:
    return await _page(request, "tasks", ("tasks",))


async def task_page(request: web.Request) -> web.Response:
    task = await request.app[BUS].queue.get(path_id(request))
    return await _page(request, "task", (), task=task)


async def source_page(request: web.Request) -> web.Response:
    """An ingested source's chunks, so an answer's citations can link to what they cite."""
    source = request.query.get("source", "")
    if not source:
        raise BadParameter("parameter 'source' is required")
    try:
        chunks = await knowledge_base.source_chunks(request.app[BUS].pool, source)
    except BgError:
        chunks = []
    if not chunks:
        raise web.HTTPNotFound(reason=f"no ingested source {source!r}")
    return await _page(
        request, "source", (), source=source, chunks=chunks, heading=request.query.get("heading", "")
    )


async def events_page(request: web.Request) -> web.Response:
    return await _page(request, "events", ("events",))


async def event_page(request: web.Request) -> web.Response:
    """One event with its whole payload: where the event log's truncated previews link."""
    found = await system.event(request.app[BUS].pool, path_id(request))
    return await _page(request, "event", (), event=found)


def partial_handler(region: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        context = await REGIONS[region](request)
        return aiohttp_jinja2.render_template(f"partials/{region}.html", request, context)

    return handler


@jinja2.pass_context
def _csrf(context: Any) -> str:
    token = context["app"][SETTINGS].token
    return csrf_token(token) if token else ""


def _ago(seconds: Any) -> str:
    if seconds is None:
        return "never"
    s = float(seconds)
    if s < 60:
        return f"{s:.0f}s ago"
    if s < 3600:
        return f"{s / 60:.0f}m ago"
    return f"{s / 3600:.1f}h ago"


def _static(app: web.Application) -> Callable[[str], str]:
    """``static('app/app.css')`` or ``static('vendor/<package>/...')``: a URL from the static routes."""

    def static(path: str) -> str:
        area, _, filename = path.partition("/")
        return str(app.router[f"static_{area}"].url_for(filename=filename))

    return static


def setup(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"], default=True),
        context_processors=[aiohttp_jinja2.request_processor],
    )
    env.globals.update(csrf=_csrf, ago=_ago, app=app, static=_static(app))
    r = app.router
    r.add_get("/", overview, name="overview")
    r.add_get("/agents/{name}", agent_page, name="agent")
    r.add_get("/alerts", alerts_page, name="alerts")
    r.add_get("/tasks", tasks_page, name="tasks")
    r.add_get("/tasks/{id}", task_page, name="task")
    r.add_get("/events", events_page, name="events")
    r.add_get("/events/{id}", event_page, name="event")
    r.add_post("/ask", ask, name="ask")
    r.add_get("/knowledge", source_page, name="source")
    for region in REGIONS:
        r.add_get(f"/partials/{region}", partial_handler(region), name=f"partial_{region}")
    r.add_static("/static/app", HERE / "static", name="static_app")
    if ASSETS.exists():
        r.add_static("/static/vendor", ASSETS, name="static_vendor")
    else:
        logger.warning(
            "dashboard assets are missing (in a checkout run `npm ci --prefix web`; a built package "
            "ships them); pages render without live updates"
        )
