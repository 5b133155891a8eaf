"""The AI help contract, written once: queue names, request and answer shapes, and its tables.

The web and the CLI never call the ai-help agent directly: they put a request
on one of its queues and await the task's result (DESIGN.md, "When the web
needs an agent's work done"). Search takes :class:`SearchRequest` on
``ai.search`` and returns a list of hits (``bus.knowledge.Hit.as_json``);
questions take :class:`AskRequest` on ``ai.ask`` and return an
:class:`Answer`, streaming :class:`HelpEvent` on the ``help`` channel as they
are written; reports take :class:`ReportRequest` on ``ai.report``. Every
exchange is logged in ``bg.llm_conversations`` (:func:`help_log`), which the
LangSmith bridge forwards (``bus.langsmith``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bus import db
from bus.errors import AIHelpNotRunning, InvalidArgument

AGENT = "ai-help"
"""The name of the agent that serves these queues."""
SEARCH_QUEUE = "ai.search"
ASK_QUEUE = "ai.ask"
REPORT_QUEUE = "ai.report"
HELP_CHANNEL = "help"
"""Where answers stream, as :class:`HelpEvent` payloads."""
REPORTS_CHANNEL = "reports"
"""Where each new system report is published."""
MAX_QUESTION_CHARS = 4000


def _payload(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class SearchRequest:
    """A search: query text ``q`` and how many hits, ``k``."""

    q: str
    k: int = 5

    def to_dict(self) -> dict[str, Any]:
        return {"q": self.q, "k": self.k}

    @classmethod
    def from_dict(cls, data: Any) -> SearchRequest:
        """The request in a task payload; a ``k`` that is no whole number is an :class:`InvalidArgument`."""
        payload = _payload(data)
        try:
            k = int(payload.get("k", 5))
        except (TypeError, ValueError):
            raise InvalidArgument("k must be a whole number") from None
        return cls(str(payload.get("q", "")), k)


@dataclass(frozen=True)
class AskRequest:
    """A question; ``request_id`` is set when it came from SQL (``bg.ask()``, a ``bg.help_requests`` row)."""

    question: str
    request_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"question": self.question}
        if self.request_id is not None:
            data["request_id"] = self.request_id
        return data

    @classmethod
    def from_dict(cls, data: Any) -> AskRequest:
        """The request in a task payload (the question stripped)."""
        payload = _payload(data)
        request_id = payload.get("request_id")
        return cls(str(payload.get("question", "")).strip(), int(request_id) if request_id else None)


@dataclass(frozen=True)
class ReportRequest:
    """A system report over the last ``period_s`` seconds (None: the agent's own period)."""

    period_s: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {} if self.period_s is None else {"period_s": self.period_s}

    @classmethod
    def from_dict(cls, data: Any) -> ReportRequest:
        period = _payload(data).get("period_s")
        return cls(int(period) if period is not None else None)


@dataclass(frozen=True)
class Answer:
    """An answer: its text, its cited sources (``{n, source, heading}``), its mode and model."""

    answer: str
    citations: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "extractive"
    model: str = "extractive"

    def to_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "citations": self.citations, "mode": self.mode, "model": self.model}

    @classmethod
    def from_dict(cls, data: Any) -> Answer:
        payload = _payload(data)
        return cls(
            str(payload.get("answer", "")),
            list(payload.get("citations") or []),
            str(payload.get("mode", "extractive")),
            str(payload.get("model", "extractive")),
        )


@dataclass(frozen=True)
class HelpEvent:
    """One event on the ``help`` channel: a piece of task ``task``'s answer, or its end."""

    task: int | None
    delta: str = ""
    done: bool = False

    def to_dict(self) -> dict[str, Any]:
        if self.done:
            return {"task": self.task, "done": True}
        return {"task": self.task, "delta": self.delta}

    @classmethod
    def from_dict(cls, data: Any) -> HelpEvent:
        payload = _payload(data)
        task = payload.get("task")
        return cls(
            int(task) if task is not None else None, str(payload.get("delta", "")), bool(payload.get("done"))
        )


async def is_ai_help_running(pool: db.Pool | db.Connection) -> bool:
    """Whether an ai-help agent instance is running (anything that needs it goes through the queue)."""
    rows = await db.call(pool, "agent_status_all")
    return any(r["name"] == AGENT and r["status"] == "running" for r in rows)


async def require_ai_help(pool: db.Pool | db.Connection) -> None:
    """Raise :class:`~bus.errors.AIHelpNotRunning`, with the fix, unless an ai-help agent is running."""
    if not await is_ai_help_running(pool):
        raise AIHelpNotRunning()


async def knowledge_ready(pool: db.Pool | db.Connection) -> bool:
    """Whether the knowledge base tables exist (the pgvector migration ran)."""
    return bool(await db.call(pool, "knowledge_ready"))


async def help_context(pool: db.Pool | db.Connection) -> dict[str, Any]:
    """Live facts for an answer: agents not up, firing alerts, failed tasks of the last day, host metrics."""
    return dict(await db.call(pool, "help_context"))


async def help_log(
    pool: db.Pool | db.Connection,
    *,
    question: str,
    context_ids: Sequence[str],
    answer: str,
    model: str,
    mode: str,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    latency_ms: float,
    started_at: datetime,
) -> int:
    """Log one exchange in ``bg.llm_conversations`` (the LangSmith bridge forwards it); returns its id."""
    return int(
        await db.call(
            pool,
            "help_log",
            question,
            list(context_ids),
            answer,
            model,
            mode,
            prompt_tokens,
            completion_tokens,
            latency_ms,
            started_at,
        )
    )


async def help_answered(pool: db.Pool | db.Connection, request_id: int, answer: Answer) -> None:
    """Store the answer to a SQL caller's ``bg.help_requests`` row."""
    await db.call(pool, "help_answered", request_id, answer.answer, answer.citations)
