"""Questions to the ai-help agent: extractive answers with citations and live state, from SQL too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bus import ai
from bus.client import Bus
from tests.ai_setup import ai_help_running
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def helper(db_url: str, settings_for) -> AsyncIterator[Bus]:
    async with ai_help_running(settings_for(db_url, BGAGENTS_EMBEDDER="hashing")) as bus:
        yield bus


async def test_which_agent_is_down_and_why(helper: Bus, db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "insert into bg.agents (instance_id, name, host, pid, status, health, last_beat_at) "
            "values ('p@h1', 'performance', 'h1', 7, 'dead', 'down', now() - interval '42 seconds')"
        )
    finally:
        await conn.close()
    cursor = await helper.events.current_cursor()
    task_id = await helper.queue.enqueue(ai.ASK_QUEUE, {"question": "which agent is down and why?"})
    result = await helper.queue.result(task_id, timeout=30)
    assert result["mode"] == "extractive"
    assert "extracted" in result["answer"]
    assert "performance on h1 is down" in result["answer"] and "42" in result["answer"]
    assert "[1]" in result["answer"] and result["citations"][0]["n"] == 1
    assert result["citations"][0]["source"].endswith("README.md")
    streamed = [e.payload async for e in _take(helper, cursor, task_id)]
    assert "".join(p.get("delta", "") for p in streamed) == result["answer"]
    logged = await helper.pool.fetchrow("select mode, answer from bg.llm_conversations")
    assert (logged["mode"], logged["answer"]) == ("extractive", result["answer"])


async def _take(bus: Bus, cursor: str, task_id: int):  # type: ignore[no-untyped-def]
    async for event in bus.subscribe(["help"], after=cursor):
        if event.payload.get("task") == task_id:
            if event.payload.get("done"):
                return
            yield event


async def test_ask_from_sql_lands_in_help_requests(helper: Bus, db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        request_id = await conn.fetchval("select bg.ask('how do I enqueue a task from SQL?')")

        async def answered() -> asyncpg.Record | None:
            row = await conn.fetchrow(
                "select status, answer, citations from bg.help_requests where id = $1", request_id
            )
            return row if row["status"] == "answered" else None

        row = await eventually(answered, timeout=30, what=f"help request {request_id} answered", interval=0.1)
        assert "Use it from SQL" in row["answer"] or "Use it from SQL" in row["citations"]
        with pytest.raises(asyncpg.InvalidParameterValueError) as err:
            await conn.fetchval("select bg.ask('')")
        assert err.value.hint
    finally:
        await conn.close()
