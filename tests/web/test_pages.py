"""Pages render without JavaScript, escape what they show, build every URL with url(), keep
big payloads out of the lists, and every partial has a route."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

TEMPLATES = Path(__file__).resolve().parents[2] / "web" / "templates"


async def test_every_page_renders_with_the_cursor_in_its_sse_url(client: TestClient) -> None:
    for path in ("/", "/alerts", "/tasks", "/events", "/agents/performance"):
        resp = await client.get(path)
        assert resp.status == 200, path
        html = await resp.text()
        assert 'sse-connect="/api/events?coalesce=1&amp;after=' in html
        assert "cdn" not in html.lower()


def test_every_partial_has_a_route_and_every_route_a_partial(client: TestClient) -> None:
    routes = {r.name for r in client.app.router.routes() if r.name and r.name.startswith("partial_")}
    templates = {f"partial_{p.stem}" for p in (TEMPLATES / "partials").glob("*.html")}
    assert routes == templates


async def test_templates_escape_untrusted_text(client: TestClient, db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("""select bg.publish('x', '{"html": "<script>alert(1)</script>"}')""")
        task = await conn.fetchval("select bg.enqueue('q', '{}')")
        await conn.execute(
            "update bg.tasks set status = 'failed', last_error = '<img src=x onerror=alert(1)>' "
            "where id = $1",
            task,
        )
    finally:
        await conn.close()
    events = await (await client.get("/events")).text()
    assert "<script>alert(1)</script>" not in events
    detail = await (await client.get(f"/tasks/{task}")).text()
    assert "<img src=x" not in detail and "&lt;img src=x" in detail


async def test_a_bad_filter_gets_a_400_not_a_traceback(client: TestClient) -> None:
    resp = await client.get("/tasks?status=bogus")
    assert resp.status == 400
    assert "status" in (await resp.json())["error"]


def test_templates_build_every_url_with_url_or_static() -> None:
    hard_coded = re.compile(r'(?:href|src|action|hx-[a-z]+|sse-connect)="[/?]')
    for path in TEMPLATES.rglob("*.html"):
        found = hard_coded.findall(path.read_text())
        assert not found, (path.name, found)


def test_templates_have_no_inline_script_or_style() -> None:
    """The CSP allows neither (no 'unsafe-inline'), so none may be needed."""
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=", re.IGNORECASE)
    for path in TEMPLATES.rglob("*.html"):
        found = inline.findall(path.read_text())
        assert not found, (path.name, found)


async def test_htmx_runs_without_eval_and_script_tags(client: TestClient) -> None:
    html = await (await client.get("/")).text()
    meta = re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", html)
    assert meta is not None
    config = json.loads(meta.group(1))
    assert config["allowEval"] is False and config["allowScriptTags"] is False
    assert config["includeIndicatorStyles"] is False  # its inline <style> would break the CSP


async def test_the_agent_name_from_the_url_is_encoded_in_its_command_url(client: TestClient) -> None:
    html = await (await client.get("/agents/a%3Fb%23c%20d%22")).text()
    assert 'hx-post="/api/agents/a%3Fb%23c%20d%22/command"' in html


async def test_one_huge_payload_does_not_fill_the_event_and_task_lists(
    client: TestClient, db_url: str
) -> None:
    huge = json.dumps({"blob": "x" * 900_000})  # just under the 1 MiB payload limit
    conn = await asyncpg.connect(db_url)
    try:
        event_id = await conn.fetchval("select bg.publish('big', $1::jsonb)", huge)
        task_id = await conn.fetchval("select bg.enqueue('big', $1::jsonb)", huge)
    finally:
        await conn.close()
    events = await (await client.get("/partials/events")).text()
    assert len(events) < 20_000
    assert f'href="/events/{event_id}"' in events
    page = await (await client.get("/events")).text()
    assert len(page) < 40_000
    tasks = await (await client.get("/partials/tasks")).text()
    assert len(tasks) < 20_000
    assert f'href="/tasks/{task_id}"' in tasks
    whole = await client.get(f"/events/{event_id}")
    assert whole.status == 200
    assert "x" * 900_000 in await whole.text()


async def test_the_event_page_shows_a_small_payload_and_answers_404_and_400(
    client: TestClient, db_url: str
) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        event_id = await conn.fetchval("""select bg.publish('deploys', '{"version": "<b>1.4.2</b>"}')""")
    finally:
        await conn.close()
    events = await (await client.get("/partials/events")).text()
    assert "&lt;b&gt;1.4.2" in events and f"/events/{event_id}" not in events  # whole: no link
    html = await (await client.get(f"/events/{event_id}")).text()
    assert "1.4.2" in html and "<b>1.4.2" not in html
    assert (await client.get("/events/99999999")).status == 404
    assert (await client.get("/events/x")).status == 400


async def test_the_ask_page_refuses_a_question_over_the_limit(make_client: Any) -> None:
    client: TestClient = await make_client(BGAGENTS_MAX_QUESTION_CHARS="50")
    resp = await client.post("/ask", data={"question": "y" * 80})
    html = await resp.text()
    assert "too long" in html and "80 characters" in html and "at most 50" in html
