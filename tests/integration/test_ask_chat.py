"""With an OpenAI-compatible server configured, answers stream from the real openai client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bus import ai
from tests.ai_setup import ai_help_running
from tests.stubs.openai_stub import RECORDED, make_app

ROOT = Path(__file__).resolve().parents[2]


async def test_ask_streams_a_chat_answer_and_logs_it(db_url: str, settings_for, aiohttp_server: Any) -> None:
    stub = await aiohttp_server(make_app())
    settings = settings_for(
        db_url,
        BGAGENTS_EMBEDDER="hashing",
        OPENAI_BASE_URL=f"http://127.0.0.1:{stub.port}/v1",
        BGAGENTS_CHAT_MODEL="stub-model",
    )
    async with ai_help_running(settings) as bus:
        cursor = await bus.events.current_cursor()
        task_id = await bus.queue.enqueue(ai.ASK_QUEUE, {"question": "how do I enqueue from SQL?"})
        result = await bus.queue.result(task_id, timeout=30)
        deltas = []
        async for event in bus.subscribe(["help"], after=cursor):
            if event.payload.get("task") == task_id:
                if event.payload.get("done"):
                    break
                deltas.append(event.payload["delta"])
        assert (result["mode"], result["model"]) == ("chat", "stub-model")
        assert result["answer"] == "Agent performance is down [1]." == "".join(deltas)
        assert len(deltas) == 5  # streamed word by word
        [sent] = stub.app[RECORDED]
        assert sent["stream"] is True and sent["model"] == "stub-model"
        prompt = sent["messages"][-1]["content"]
        assert "[1] Background Agents > Use it from SQL" in prompt and "Live state:" in prompt
        row = await bus.pool.fetchrow(
            "select mode, model, prompt_tokens, completion_tokens, answer from bg.llm_conversations"
        )
        assert tuple(row) == ("chat", "stub-model", 11, 5, result["answer"])
