"""AI help through the queue: ``/api/search`` and ``/api/help`` (the web only enqueues and awaits)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bus import db
from bus.queue import TaskFailed
from web.api.common import (
    BadParameter,
    body,
    int_param,
    json_error,
    reply,
)
from web.keys import BUS

SEARCH_QUEUE = "ai.search"  # the ai-help agent's queue; the web only enqueues and awaits


async def search(request: web.Request) -> web.Response:
    """Ask the ai-help agent, through the queue, for the best chunks."""
    query = request.query.get("q", "").strip()
    if not query:
        raise BadParameter("parameter 'q' is required")
    k = int_param(request, "k", 5, 1, 100)
    bus = request.app[BUS]
    if not await ai_help_running(bus):
        return json_error(
            503, "the ai-help agent is not running", "start it with `bgagents run ai-help` (or `bgagents up`)"
        )
    task_id = await bus.queue.enqueue(SEARCH_QUEUE, {"q": query, "k": k}, max_attempts=1, timeout=60)
    try:
        hits = await bus.queue.result(task_id, timeout=60)
    except TimeoutError:
        return json_error(503, "the ai-help agent did not answer in 60 s", "is it busy or stuck?")
    except TaskFailed as exc:
        row = await bus.queue.get(task_id)
        return json_error(503, f"search failed: {row['last_error'] or exc.message}")
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
        return json_error(
            503, "the ai-help agent is not running", "start it with `bgagents run ai-help` (or `bgagents up`)"
        )
    cursor = await bus.events.current_cursor()
    task_id = await bus.queue.enqueue(ASK_QUEUE, {"question": question}, max_attempts=2, timeout=120)
    stream = str(request.app.router["api_events"].url_for().with_query(channels="help", after=cursor))
    return reply({"task": task_id, "stream": stream, "result": f"/api/tasks/{task_id}"}, 202)
