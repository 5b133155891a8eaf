"""AI help through the queue: ``/api/search`` and ``/api/help`` (the web only enqueues and awaits)."""

from __future__ import annotations

from aiohttp import web

from bus import ai
from bus.errors import TaskFailed
from web.api.common import (
    body,
    int_param,
    json_error,
    reply,
    text,
)
from web.keys import BUS


async def search(request: web.Request) -> web.Response:
    """Ask the ai-help agent, through the queue, for the best chunks."""
    query = ai.check_query(text(request.query.get("q"), "q", ai.MAX_QUERY_CHARS))
    k = int_param(request, "k", 5, 1, 100)
    bus = request.app[BUS]
    await ai.require_ai_help(bus.pool)
    task_id = await bus.queue.enqueue(
        ai.SEARCH_QUEUE, ai.SearchRequest(query, k).to_dict(), max_attempts=1, timeout=60
    )
    try:
        hits = await bus.queue.result(task_id, timeout=60)
    except TimeoutError:
        return json_error(503, "the ai-help agent did not answer in 60 s", "is it busy or stuck?")
    except TaskFailed as exc:
        row = await bus.queue.get(task_id)
        return json_error(503, f"search failed: {row['last_error'] or exc.message}")
    return reply({"query": query, "hits": hits})


async def help_request(request: web.Request) -> web.Response:
    """Queue a question for the ai-help agent; its answer streams on the ``help`` SSE channel."""
    data = await body(request)
    bus = request.app[BUS]
    limit = bus.settings.max_question_chars
    ask = ai.AskRequest.checked(text(data.get("question"), "question", limit), limit)
    await ai.require_ai_help(bus.pool)
    cursor = await bus.events.current_cursor()
    task_id = await bus.queue.enqueue(ai.ASK_QUEUE, ask.to_dict(), max_attempts=2, timeout=120)
    stream = str(
        request.app.router["api_events"].url_for().with_query(channels=ai.HELP_CHANNEL, after=cursor)
    )
    return reply({"task": task_id, "stream": stream, "result": f"/api/tasks/{task_id}"}, 202)
