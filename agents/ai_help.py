"""AIHelpAgent (``ai-help``): answers questions about the running system.

So far it serves search: the web and other apps put ``{"q", "k"}`` on the
``ai.search`` queue and await the task's result, a list of hits
``{source, heading, content, score}`` from hybrid retrieval. The embedder is
built on first use, so starting the agent never waits for model weights.
Without pgvector the agent runs but says why it can't help, in
``bgagents status`` and in each failed task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from agents import knowledge
from agents.base import Agent
from agents.embedders import Embedder, make_embedder
from bus.errors import FeatureUnavailable, InvalidArgument
from bus.worker import Task

SEARCH_QUEUE = "ai.search"


class AIHelpAgent(Agent):
    name = "ai-help"
    kind = "builtin"
    queues: ClassVar[dict[str, str]] = {SEARCH_QUEUE: "handle_search"}

    @dataclass
    class Config(Agent.Config):
        interval: float = 60.0
        concurrency: int = 2

    _embedder: Embedder | None = None
    _note: str | None = None

    async def setup(self) -> None:
        if not await self.bus.pool.fetchval("SELECT to_regclass('bg.document_chunks') IS NOT NULL"):
            self._note = "idle: pgvector is missing, so AI search is off (see bgagents doctor)"

    def status_note(self) -> str | None:
        return self._note

    def embedder(self) -> Embedder:
        if self._embedder is None:
            s = self.bus.settings
            self._embedder = make_embedder(
                s.embedder, s.data_dir, openai_api_key=s.openai_api_key, openai_base_url=s.openai_base_url
            )
        return self._embedder

    async def handle_search(self, task: Task) -> list[dict[str, Any]]:
        if self._note:
            raise FeatureUnavailable(self._note)
        payload = task.payload if isinstance(task.payload, dict) else {}
        query = str(payload.get("q", ""))
        try:
            k = int(payload.get("k", 5))
        except (TypeError, ValueError):
            raise InvalidArgument("k must be a whole number") from None
        hits = await knowledge.search(self.bus.pool, self.embedder(), query, k)
        return [hit.as_json() for hit in hits]
