"""End to end, with real processes and the real clients: `bgagents ask` streams a chat
answer with citations from an OpenAI-compatible stub, and the exchange reaches a LangSmith
stub that fails twice first: exactly one run per id, and the row ends forwarded."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from tests.ai_setup import ai_help_running
from tests.conftest import BGAGENTS
from tests.integration.test_langsmith import API_KEY, StubLangSmith, stub  # noqa: F401 (a fixture)
from tests.stubs.openai_stub import RECORDED, make_app
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
FAST = """
ai-help: {heartbeat_interval: 0.5}
langsmith-bridge: {interval: 0.3, backoff_base: 0.2, heartbeat_interval: 0.5}
"""


async def test_ask_streams_with_citations_and_reaches_langsmith(
    db_url: str,
    settings_for: Any,
    aiohttp_server: Any,
    stub: StubLangSmith,  # noqa: F811
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    async with ai_help_running(settings_for(db_url), agent=False) as bus:  # the agents run as processes
        openai_stub = await aiohttp_server(make_app())
        stub.fail_next = 2
        monitoring = tmp_path / "monitoring.yml"
        monitoring.write_text(FAST)
        env = {
            **cli_env,
            "DATABASE_URL": db_url,
            "BGAGENTS_EMBEDDER": "hashing",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{openai_stub.port}/v1",
            "BGAGENTS_CHAT_MODEL": "stub-model",
            "LANGSMITH_API_KEY": API_KEY,
            "LANGSMITH_ENDPOINT": stub.url,
            "BGAGENTS_MONITORING_FILE": str(monitoring),
        }
        agents = await asyncio.create_subprocess_exec(
            *BGAGENTS,
            "run",
            "ai-help",
            "langsmith-bridge",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await eventually(
                lambda: bus.pool.fetchval(
                    "select count(*) = 2 from bg.agents where status = 'running' "
                    "and name in ('ai-help', 'langsmith-bridge')"
                ),
                timeout=30,
                what="ai-help and langsmith-bridge running",
                interval=0.1,
            )
            ask = await asyncio.create_subprocess_exec(
                *BGAGENTS,
                "ask",
                "how do I enqueue a task from SQL?",
                env=env,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(ask.communicate(), 60)
            text = out.decode()
            assert ask.returncode == 0, err.decode()
            assert "Agent performance is down [1]." in text  # streamed from the chat stub
            assert "[1] " in text and "README.md — Background Agents > Use it from SQL" in text
            assert openai_stub.app[RECORDED][0]["stream"] is True

            await eventually(
                lambda: bus.pool.fetchval("select forwarded_at is not null from bg.llm_conversations"),
                timeout=30,
                what="the conversation forwarded to LangSmith",
                interval=0.1,
                detail=lambda: f"the stub saw {stub.statuses}",
            )
            row = await bus.pool.fetchrow("select forward_attempts, mode from bg.llm_conversations")
            assert row["mode"] == "chat" and row["forward_attempts"] >= 1
            assert stub.statuses[:2] == [500, 500]
            assert len(stub.runs) == 2  # one parent chain run and one LLM run, each stored once
            kinds = sorted(r["run_type"] for r in stub.runs.values())
            assert kinds == ["chain", "llm"]
        finally:
            if agents.returncode is None:
                agents.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(agents.wait(), 20)
                except TimeoutError:
                    agents.kill()
                    await agents.wait()
