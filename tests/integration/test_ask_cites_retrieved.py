"""With an OpenAI-compatible server, an answer that cites a section nobody retrieved loses that citation."""

from __future__ import annotations

from typing import Any

from bus import ai
from tests.ai_setup import ai_help_running
from tests.stubs.openai_stub import RECORDED, make_app


async def test_chat_answer_cites_only_retrieved_sections(
    db_url: str, settings_for, aiohttp_server: Any
) -> None:
    stub = await aiohttp_server(make_app(["Use ", "bg.enqueue ", "[1] ", "as ", "[9] ", "says."]))
    settings = settings_for(
        db_url,
        BGAGENTS_EMBEDDER="hashing",
        OPENAI_BASE_URL=f"http://127.0.0.1:{stub.port}/v1",
        BGAGENTS_CHAT_MODEL="stub-model",
    )
    async with ai_help_running(settings) as bus:
        task_id = await bus.queue.enqueue(ai.ASK_QUEUE, {"question": "how do I enqueue from SQL?"})
        result = await bus.queue.result(task_id, timeout=30)
        [sent] = stub.app[RECORDED]
        prompt = sent["messages"][-1]["content"]
        assert "[1] " in prompt and "[9] " not in prompt  # five sections were retrieved, not nine
        assert result["answer"] == "Use bg.enqueue [1] as says."
        assert [c["n"] for c in result["citations"]] == [1]
        assert result["citations"][0]["source"].endswith("README.md")
        logged = await bus.pool.fetchval("select context_ids from bg.llm_conversations")
        assert len(logged) == 1
