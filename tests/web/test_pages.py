"""Pages render without JavaScript, escape what they show, and every partial has a route."""

from __future__ import annotations

from pathlib import Path

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
