"""GET /api/search goes through the queue to the ai-help agent; 503 when it isn't running."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient

from tests.ai_setup import ai_help_running
from web.app import create_app

ROOT = Path(__file__).resolve().parents[2]


async def test_search_without_the_agent_is_a_503_with_the_reason(client: TestClient) -> None:
    resp = await client.get("/api/search?q=enqueue")
    assert resp.status == 503
    body = await resp.json()
    assert "ai-help" in body["error"] and "bgagents" in body["hint"]
    assert (await client.get("/api/search")).status == 400


async def test_search_through_the_agent(db_url: str, settings_for, aiohttp_client) -> None:
    settings = settings_for(db_url, BGAGENTS_EMBEDDER="hashing")
    async with ai_help_running(settings):
        client: TestClient = await aiohttp_client(create_app(settings))
        resp = await client.get("/api/search", params={"q": "how do I enqueue a task from SQL", "k": "3"})
        assert resp.status == 200, await resp.text()
        hits = (await resp.json())["hits"]
        assert len(hits) == 3
        assert set(hits[0]) == {"source", "heading", "content", "score"}
        assert hits[0]["source"].endswith("README.md") and "Use it from SQL" in hits[0]["heading"]


async def test_help_request_validation_and_503(client: TestClient) -> None:
    assert (await client.post("/api/help", json={"question": ""})).status == 400
    resp = await client.post("/api/help", json={"question": "which agent is down?"})
    assert resp.status == 503
    assert "ai-help" in (await resp.json())["error"]


async def test_help_request_streams_the_answer_over_sse(db_url: str, settings_for, aiohttp_client) -> None:
    from tests.web.conftest import read_events

    settings = settings_for(db_url, BGAGENTS_EMBEDDER="hashing")
    async with ai_help_running(settings):
        client: TestClient = await aiohttp_client(create_app(settings))
        resp = await client.post("/api/help", data={"question": "which agent is down?"})
        assert resp.status == 202, await resp.text()
        accepted = await resp.json()
        stream = await client.get(accepted["stream"])
        events = await read_events(stream, 2)
        mine = [e["data"]["payload"] for e in events if e["data"]["payload"].get("task") == accepted["task"]]
        assert "extracted" in mine[0]["delta"] and mine[-1].get("done") is True
        stream.close()


async def test_ask_panel_links_citations_to_their_source(db_url: str, settings_for, aiohttp_client) -> None:
    settings = settings_for(db_url, BGAGENTS_EMBEDDER="hashing")
    async with ai_help_running(settings):
        client: TestClient = await aiohttp_client(create_app(settings))
        html = await (await client.post("/ask", data={"question": "how do I enqueue from SQL?"})).text()
        assert 'href="/knowledge?source=' in html
        link = html.split('href="', 2)[1].split('"', 1)[0].replace("&amp;", "&")
        page = await client.get(link)
        assert page.status == 200
        assert 'class="card chunk cited"' in await page.text()
        assert (await client.get("/knowledge?source=/nowhere.md")).status == 404
