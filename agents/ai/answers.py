"""Answers for the ai-help agent: the prompt, the extractive fallback, and streaming chat.

The prompt numbers the retrieved chunks ``[1]``, ``[2]`` ... and adds the live
system state (agents that are not up, firing alerts, failed tasks); answers
cite ``[n]``. Without a chat model configured, the answer is extracted from
the best chunks and the live state, and says that it was. Either way an answer
cites only retrieved sections: :func:`only_retrieved` drops a marker that
points at none, and :func:`cited` lists the sections the answer does cite.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from bus.knowledge import Hit

SYSTEM = (
    "You answer questions about a running Background Agents system. Use only the numbered "
    "sources and the live state below. Cite sources as [n]. Say so when they don't answer it."
)


_MARKER = re.compile(r"\s?\[(\d+)\]")


def citations(hits: list[Hit]) -> list[dict[str, Any]]:
    return [{"n": n, "source": h.source, "heading": h.heading} for n, h in enumerate(hits, 1)]


def only_retrieved(answer: str, hits: list[Hit]) -> str:
    """``answer`` without the ``[n]`` markers that point at no retrieved section."""
    return _MARKER.sub(lambda m: m.group(0) if 1 <= int(m.group(1)) <= len(hits) else "", answer)


def cited(answer: str, hits: list[Hit]) -> list[dict[str, Any]]:
    """The retrieved sections that ``answer`` cites as ``[n]``, by number."""
    numbers = {int(m.group(1)) for m in _MARKER.finditer(answer)}
    return [c for c in citations(hits) if c["n"] in numbers]


def live_lines(context: dict[str, Any]) -> list[str]:
    """The live state as sentences."""
    lines = []
    for agent in context.get("unhealthy") or []:
        age = agent.get("beat_age_s")
        beat = f"its last heartbeat was {age} s ago" if age is not None else "it never sent a heartbeat"
        lines.append(
            f"Agent {agent['name']} on {agent['host']} is {agent['health']} "
            f"(status {agent['status']}): {beat}."
        )
    for alert in context.get("alerts") or []:
        lines.append(f"Firing {alert['severity']} alert: {alert['summary']}.")
    metrics = context.get("metrics") or []
    if metrics:
        lines.append(
            "Last 5 minutes: "
            + "; ".join(f"{m['metric']} avg {m['avg']}, max {m['max']}" for m in metrics)
            + "."
        )
    failed = context.get("failed_tasks") or 0
    if failed:
        lines.append(
            f"{failed} task(s) failed for good in the last day (see `bgagents tasks --status failed`)."
        )
    return lines


def prompt(question: str, hits: list[Hit], context: dict[str, Any]) -> list[dict[str, str]]:
    sources = "\n\n".join(f"[{n}] {h.heading} ({h.source})\n{h.content}" for n, h in enumerate(hits, 1))
    live = "\n".join(live_lines(context)) or "All agents are up and no alert fires."
    user = f"Live state:\n{live}\n\nSources:\n{sources or '(none)'}\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def _lead(text: str, limit: int = 280) -> str:
    flat = " ".join(text.split())
    sentences = re.split(r"(?<=[.!?])\s+", flat)
    out = ""
    for sentence in sentences:
        if len(out) + len(sentence) > limit and out:
            break
        out = f"{out} {sentence}".strip()
    return out[:limit]


def extractive(question: str, hits: list[Hit], context: dict[str, Any]) -> str:
    """An answer built from the live state and the best chunks, citing them."""
    parts = [
        "No language model is configured, so this answer is extracted from the live "
        "system state and the documentation."
    ]
    live = live_lines(context)
    if live:
        parts.append("Right now: " + " ".join(live))
    elif any(w in question.lower() for w in ("down", "failing", "broken", "wrong", "alert")):
        parts.append("Right now every agent is up and no alert is firing.")
    for n, hit in enumerate(hits[:3], 1):
        parts.append(f"[{n}] {hit.heading}: {_lead(hit.content)}")
    if not hits:
        parts.append("The knowledge base has nothing on this yet (run `bgagents ingest`).")
    return "\n\n".join(parts)


async def stream_chat(
    client: Any, model: str, messages: list[dict[str, str]], usage: dict[str, int]
) -> AsyncIterator[str]:
    """Yield the answer's text as it streams; fills ``usage`` with token counts."""
    stream = await client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    async for chunk in stream:
        if getattr(chunk, "usage", None):
            usage["prompt_tokens"] = chunk.usage.prompt_tokens
            usage["completion_tokens"] = chunk.usage.completion_tokens
        for choice in chunk.choices or []:
            if choice.delta and choice.delta.content:
                yield choice.delta.content
