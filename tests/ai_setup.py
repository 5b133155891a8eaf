"""A database with the README ingested and an ai-help agent running, for the AI tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from agents.ai import knowledge
from agents.ai.embedders import HashingEmbedder
from agents.builtin.ai_help import AIHelpAgent
from agents.runtime.supervisor import Supervisor
from bus import ai
from bus.client import Bus
from bus.config import Settings
from tests.waiting import eventually

README = Path(__file__).resolve().parent.parent / "README.md"


@asynccontextmanager
async def ai_help_running(settings: Settings, *, agent: bool = True) -> AsyncIterator[Bus]:
    """Skip without pgvector; otherwise ingest the README (hashing embedder) and run ai-help."""
    async with Bus.connect(settings) as bus:
        if not await ai.knowledge_ready(bus.pool):
            pytest.skip("pgvector is not installed on this server, so the knowledge base is off")
        await knowledge.ingest(bus.pool, HashingEmbedder(), [README])
        if not agent:
            yield bus
            return
        supervisor = Supervisor(bus, [AIHelpAgent(bus)])
        running = asyncio.create_task(supervisor.run())
        try:
            await eventually(lambda: ai.is_ai_help_running(bus.pool), timeout=15, what="ai-help running")
            yield bus
        finally:
            supervisor.stop()
            await running
