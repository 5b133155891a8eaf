"""GET /api/search goes through the queue to the ai-help agent; 503 when it isn't running."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from agents import knowledge
from agents.ai_help import AIHelpAgent
from agents.embedders import HashingEmbedder
from agents.supervisor import Supervisor
from bus.client import Bus
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
    async with Bus.connect(settings) as bus:
        if not await bus.pool.fetchval("select to_regclass('bg.document_chunks') is not null"):
            pytest.skip("pgvector is not installed on this server, so the knowledge base is off")
        await knowledge.ingest(bus.pool, HashingEmbedder(), [ROOT / "README.md"])
        supervisor = Supervisor(bus, [AIHelpAgent(bus)])
        running = asyncio.create_task(supervisor.run())
        try:
            client: TestClient = await aiohttp_client(create_app(settings))
            deadline = asyncio.get_running_loop().time() + 15
            while True:
                resp = await client.get(
                    "/api/search", params={"q": "how do I enqueue a task from SQL", "k": "3"}
                )
                if resp.status == 200:
                    break
                assert asyncio.get_running_loop().time() < deadline, await resp.text()
                await asyncio.sleep(0.2)
            hits = (await resp.json())["hits"]
            assert len(hits) == 3
            assert set(hits[0]) == {"source", "heading", "content", "score"}
            assert hits[0]["source"].endswith("README.md") and "Use it from SQL" in hits[0]["heading"]
        finally:
            supervisor.stop()
            await running


async def test_help_request_validation_and_503(client: TestClient) -> None:
    assert (await client.post("/api/help", json={"question": ""})).status == 400
    resp = await client.post("/api/help", json={"question": "which agent is down?"})
    assert resp.status == 503
    assert "ai-help" in (await resp.json())["error"]


async def test_help_request_streams_the_answer_over_sse(db_url: str, settings_for, aiohttp_client) -> None:
    from tests.web.conftest import read_events

    settings = settings_for(db_url, BGAGENTS_EMBEDDER="hashing")
    async with Bus.connect(settings) as bus:
        if not await bus.pool.fetchval("select to_regclass('bg.document_chunks') is not null"):
            pytest.skip("pgvector is not installed on this server, so the knowledge base is off")
        supervisor = Supervisor(bus, [AIHelpAgent(bus)])
        running = asyncio.create_task(supervisor.run())
        try:
            client: TestClient = await aiohttp_client(create_app(settings))
            for _ in range(100):
                resp = await client.post("/api/help", data={"question": "which agent is down?"})
                if resp.status == 202:
                    break
                await asyncio.sleep(0.1)
            accepted = await resp.json()
            stream = await client.get(accepted["stream"])
            events = await read_events(stream, 2)
            mine = [
                e["data"]["payload"] for e in events if e["data"]["payload"].get("task") == accepted["task"]
            ]
            assert "extracted" in mine[0]["delta"] and mine[-1].get("done") is True
            stream.close()
        finally:
            supervisor.stop()
            await running


async def test_ask_panel_links_citations_to_their_source(db_url: str, settings_for, aiohttp_client) -> None:
    settings = settings_for(db_url, BGAGENTS_EMBEDDER="hashing")
    async with Bus.connect(settings) as bus:
        if not await bus.pool.fetchval("select to_regclass('bg.document_chunks') is not null"):
            pytest.skip("pgvector is not installed on this server, so the knowledge base is off")
        await knowledge.ingest(bus.pool, HashingEmbedder(), [ROOT / "README.md"])
        supervisor = Supervisor(bus, [AIHelpAgent(bus)])
        running = asyncio.create_task(supervisor.run())
        try:
            client: TestClient = await aiohttp_client(create_app(settings))
            for _ in range(100):
                html = await (
                    await client.post("/ask", data={"question": "how do I enqueue from SQL?"})
                ).text()
                if "not running" not in html:
                    break
                await asyncio.sleep(0.1)
            assert 'href="/knowledge?source=' in html
            link = html.split('href="', 2)[1].split('"', 1)[0].replace("&amp;", "&")
            page = await client.get(link)
            assert page.status == 200
            assert 'class="card chunk cited"' in await page.text()
            assert (await client.get("/knowledge?source=/nowhere.md")).status == 404
        finally:
            supervisor.stop()
            await running
