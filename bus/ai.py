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
"""The default of ``settings.max_question_chars``: the longest question taken."""
MAX_QUERY_CHARS = 1000
"""The longest search query taken."""
BIGINT_MAX = 2**63 - 1


def _payload(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {}


def _whole(value: Any, name: str) -> int:
    """``value`` as a bigint: an int or a string of ASCII digits, else :class:`InvalidArgument`."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not -BIGINT_MAX <= value <= BIGINT_MAX:
        raise InvalidArgument(f"{name} must be a whole number, got {str(value)[:40]!r}")
    return value


def _text(raw: Any, name: str, max_chars: int) -> str:
    """``raw`` stripped, non-empty, without NUL and at most ``max_chars`` long."""
    if not isinstance(raw, str):
        raise InvalidArgument(f"parameter {name!r} must be a string")
    value = raw.strip()
    if not value:
        raise InvalidArgument(f"parameter {name!r} is required")
    if len(value) > max_chars:
        raise InvalidArgument(
            f"parameter {name!r} must be at most {max_chars} characters, got {len(value)}",
            hint="shorten it",
        )
    if "\x00" in value:
        raise InvalidArgument(f"parameter {name!r} must not contain NUL characters")
    return value


def check_question(question: Any, max_chars: int = MAX_QUESTION_CHARS) -> str:
    """A question, stripped; an :class:`InvalidArgument` naming it if empty, too long or not text."""
    return _text(question, "question", max_chars)


def check_query(query: Any, max_chars: int = MAX_QUERY_CHARS) -> str:
    """A search query, stripped; an :class:`InvalidArgument` naming ``q`` if empty, too long or not text."""
    return _text(query, "q", max_chars)


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
        k = _whole(payload.get("k", 5), "k")
        if not 1 <= k <= 100:
            raise InvalidArgument(f"k must be between 1 and 100, got {k}")
        q = payload.get("q", "")
        if isinstance(q, str) and len(q) > MAX_QUERY_CHARS:
            raise InvalidArgument(f"parameter 'q' must be at most {MAX_QUERY_CHARS} characters, got {len(q)}")
        return cls(str(q), k)


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
    def checked(cls, question: Any, max_chars: int = MAX_QUESTION_CHARS) -> AskRequest:
        """A request for ``question``, refused (:class:`InvalidArgument`) if empty or over ``max_chars``."""
        return cls(check_question(question, max_chars))

    @classmethod
    def from_dict(cls, data: Any, max_chars: int = MAX_QUESTION_CHARS) -> AskRequest:
        """The request in a task payload (the question stripped); a question over ``max_chars`` is refused."""
        payload = _payload(data)
        request_id = payload.get("request_id")
        question = str(payload.get("question", "")).strip()
        if len(question) > max_chars:
            raise InvalidArgument(
                f"parameter 'question' must be at most {max_chars} characters, got {len(question)}"
            )
        return cls(question, _whole(request_id, "request_id") if request_id else None)


@dataclass(frozen=True)
class ReportRequest:
    """A system report over the last ``period_s`` seconds (None: the agent's own period)."""

    period_s: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {} if self.period_s is None else {"period_s": self.period_s}

    @classmethod
    def from_dict(cls, data: Any) -> ReportRequest:
        period = _payload(data).get("period_s")
        return cls(_whole(period, "period_s") if period is not None else None)


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
        try:
            task_id = _whole(task, "task") if task is not None else None
        except InvalidArgument:
            task_id = None  # not ours: a follower skips it
        return cls(task_id, str(payload.get("delta", "")), bool(payload.get("done")))


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
