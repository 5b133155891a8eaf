"""LangSmithBridge (``langsmith-bridge``): forwards every LLM exchange to LangSmith.

ai-help logs each exchange in ``bg.llm_conversations``, and that table is the
outbox: every ``interval`` seconds the bridge claims up to ``batch`` due rows
(``bus.langsmith``) and sends each as two LangSmith runs, a
``chain`` run for the exchange with an ``llm`` run under it. A row leaves the
outbox only once LangSmith has accepted both runs; any other outcome counts an
attempt and retries after ``least(3600, backoff_base * 2^attempts)`` seconds,
jittered, so nothing is lost while LangSmith is down.

Run ids are deterministic UUIDv7s (the start time in milliseconds plus a hash
of the conversation id), so a row sent twice (a crash between the send and the
mark, a lease that ran out, two bridges) is the same run twice, and LangSmith's
409 for a run it already has counts as accepted. The claim leases rows by moving
``next_attempt_at`` forward, so several bridges can run at once, and the rows of
a bridge that died come back when the lease ends. Two exchanges of one batch
failing in a row pause the bridge (exponentially, up to an hour) and hand the
rest of the batch back, instead of trying it against a LangSmith that is down;
one bad exchange on its own only backs off itself.

Settings come from the environment, read once at setup: ``LANGSMITH_API_KEY``
(or ``LANGCHAIN_API_KEY``) and ``LANGSMITH_ENDPOINT`` (or
``LANGCHAIN_ENDPOINT``). Without a key the bridge idles and says so in
``bgagents status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import langsmith
from langsmith import utils as ls_utils

from agents.runtime.agent import Agent
from bus import langsmith as outbox
from bus.errors import DatabaseError

DEFAULT_ENDPOINT = "https://api.smith.langchain.com"
LEASE_SECONDS = 300.0
"""How long a claim holds a row; a sent row that comes back is only a 409."""
TIMEOUT_MS = (5_000, 30_000)
"""Connect and read timeouts of one request to LangSmith."""
TRIP_AFTER = 2
"""Exchanges of one batch failing in a row that pause the bridge."""
MAX_PAUSE = 3600.0
PARENT_NAME = "ai-help"
"""The name of the chain run of each exchange (the agent that answered)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def uuid7_for(conversation_id: int, started_at: datetime, salt: str) -> uuid.UUID:
    """A deterministic UUIDv7: ``started_at`` in ms, then 74 bits of sha256(``id:salt``).

    The layout is RFC 9562's: 48 bits of Unix milliseconds, the version nibble
    7, 12 bits, the variant bits ``10`` and 62 bits; the 74 bits after the
    timestamp come from the hash instead of a random source, so the same
    conversation, start and salt always give the same id.
    """
    if started_at.tzinfo is None:
        raise ValueError("started_at must be timezone-aware")
    millis = (started_at - _EPOCH) // timedelta(milliseconds=1)
    if not 0 <= millis < 1 << 48:
        raise ValueError(f"started_at {started_at.isoformat()} is outside UUIDv7's range")
    digest = hashlib.sha256(f"{conversation_id}:{salt}".encode()).digest()
    bits = int.from_bytes(digest[:10], "big") >> 6  # the first 74 bits
    rand_a, rand_b = bits >> 62, bits & ((1 << 62) - 1)
    value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)


def _dotted_segment(start: datetime, run_id: uuid.UUID) -> str:
    """One segment of a run's ``dotted_order``, as the SDK's RunTree writes it."""
    return start.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ") + str(run_id)


def build_runs(row: Mapping[str, Any], project: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``create_run`` arguments for one exchange: the parent chain run and its llm run."""
    conversation_id = int(row["id"])
    started: datetime = row["started_at"]
    finished: datetime = row["finished_at"]
    question, answer, model, mode = row["question"], row["answer"], row["model"], row["mode"]
    context_ids = list(row["context_ids"] or [])
    parent_id = uuid7_for(conversation_id, started, "exchange")
    child_id = uuid7_for(conversation_id, started, "llm")
    parent_order = _dotted_segment(started, parent_id)
    common = {"conversation_id": conversation_id, "mode": mode}
    parent: dict[str, Any] = {
        "id": parent_id,
        "trace_id": parent_id,
        "dotted_order": parent_order,
        "name": PARENT_NAME,
        "run_type": "chain",
        "project_name": project,
        "inputs": {"question": question},
        "outputs": {"answer": answer, "context_ids": context_ids},
        "start_time": started,
        "end_time": finished,
        "tags": ["bgagents", mode],
        "extra": {"metadata": {**common, "model": model, "latency_ms": row["latency_ms"]}},
    }
    llm_outputs: dict[str, Any] = {"choices": [{"message": {"role": "assistant", "content": answer}}]}
    prompt_tokens, completion_tokens = row["prompt_tokens"], row["completion_tokens"]
    if prompt_tokens is not None or completion_tokens is not None:
        llm_outputs["usage_metadata"] = {
            "input_tokens": prompt_tokens or 0,
            "output_tokens": completion_tokens or 0,
            "total_tokens": (prompt_tokens or 0) + (completion_tokens or 0),
        }
    llm_metadata: dict[str, Any] = {**common, "ls_model_name": model, "ls_model_type": "chat"}
    if mode == "chat":
        llm_metadata["ls_provider"] = "openai"  # ai-help talks to chat models through the openai client
    child: dict[str, Any] = {
        "id": child_id,
        "trace_id": parent_id,
        "parent_run_id": parent_id,
        "dotted_order": parent_order + "." + _dotted_segment(started, child_id),
        "name": model,
        "run_type": "llm",
        "project_name": project,
        "inputs": {"messages": [{"role": "user", "content": question}], "context_ids": context_ids},
        "outputs": llm_outputs,
        "start_time": started,
        "end_time": finished,
        "tags": ["bgagents", mode],
        "extra": {"invocation_params": {"model": model}, "metadata": llm_metadata},
    }
    return parent, child


def _describe(exc: BaseException) -> str:
    """One short line for ``last_forward_error``, without the SDK's masked-key line."""
    lines = [line for line in str(exc).splitlines() if not line.startswith("API Key:")]
    text = " ".join(line.strip() for line in lines if line.strip()) or repr(exc)
    return f"{type(exc).__name__}: {text}"[:2000]


class LangSmithBridge(Agent):
    name = "langsmith-bridge"
    kind = "builtin"

    @dataclass
    class Config(Agent.Config):
        interval: float = 2.0
        batch: int = 20
        """Exchanges claimed per run."""
        project: str = "bgagents"
        """The LangSmith project the runs go to."""
        backoff_base: float = 2.0
        """Seconds before the first retry of a failed exchange; doubles per attempt."""

    _client: langsmith.Client | None = None
    _note: str | None = None
    _failures = 0
    """Exchanges of this run's batch that failed in a row."""
    _trips = 0
    """Pauses in a row; each one doubles the next."""
    _paused_until = 0.0
    """``time.monotonic()`` before which ``run_once`` does nothing."""

    async def setup(self) -> None:
        settings = self.bus.settings
        api_key = (
            settings.langsmith_api_key
            or os.environ.get("LANGSMITH_API_KEY")
            or os.environ.get("LANGCHAIN_API_KEY")
        )
        if not api_key:
            self._note = "idle: LANGSMITH_API_KEY is not set (nor LANGCHAIN_API_KEY), so nothing is forwarded"
            self.log.info("%s", self._note)
            return
        env = os.environ
        endpoint = (
            settings.langsmith_endpoint
            or env.get("LANGSMITH_ENDPOINT")
            or env.get("LANGCHAIN_ENDPOINT")
            or DEFAULT_ENDPOINT
        )
        try:
            self._client = await asyncio.to_thread(self._make_client, api_key, endpoint)
        except (ls_utils.LangSmithError, ValueError) as exc:
            self._note = f"idle: cannot set up the LangSmith client for {endpoint}: {_describe(exc)}"
            self.log.error("%s", self._note)
            return
        self._note = None
        self.log.info("forwarding LLM exchanges to %s, project %s", endpoint, self.config.project)

    @staticmethod
    def _make_client(api_key: str, endpoint: str) -> langsmith.Client:
        return langsmith.Client(
            api_key=api_key,
            api_url=endpoint.rstrip("/"),
            # Batching only queues runs, and its failures never reach us: send each one now.
            auto_batch_tracing=False,
            # No HTTP-level retries: the outbox retries, with backoff, and counts attempts.
            retry_config=ls_utils.LangSmithRetry(total=0),
            timeout_ms=TIMEOUT_MS,
            tracing_mode="langsmith",
            tracing_sampling_rate=1.0,  # never drop a run: we mark it forwarded
            disable_prompt_cache=True,  # close() would shut down the shared prompt cache
        )

    async def teardown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close, 0)

    def status_note(self) -> str | None:
        return self._note

    async def run_once(self) -> None:
        if self._client is None or time.monotonic() < self._paused_until:
            return
        self._failures = 0
        rows = await outbox.claim(self.bus.pool, self.config.batch, LEASE_SECONDS)
        waiting = [int(row["id"]) for row in rows]
        try:
            for row in rows:
                waiting.remove(int(row["id"]))
                if not await self._forward(row):
                    break
        finally:
            if waiting:  # cut short (a pause, a cancel, an error): hand them back at once
                with contextlib.suppress(DatabaseError):
                    await outbox.release(self.bus.pool, waiting)

    async def _forward(self, row: Mapping[str, Any]) -> bool:
        """Send one exchange and record the outcome; False when the bridge should pause."""
        conversation_id = int(row["id"])
        try:
            for run in build_runs(row, self.config.project):
                await self._send(run)
        except Exception as exc:  # any failure, ours or LangSmith's: retry later, never crash
            error = _describe(exc)
            retry_at = await outbox.failed(self.bus.pool, conversation_id, error, self.config.backoff_base)
            self._failures += 1
            self.log.warning(
                "conversation %s: attempt %s failed, retrying at %s: %s",
                conversation_id,
                int(row["forward_attempts"]) + 1,
                retry_at.isoformat() if retry_at else "never (already forwarded)",
                error,
            )
            if self._failures >= TRIP_AFTER:
                self._pause(error)
                return False
            return True
        await outbox.forwarded(self.bus.pool, conversation_id)
        self.log.debug("conversation %s forwarded", conversation_id)
        if self._failures or self._trips:
            self.log.info("LangSmith accepts runs again")
            self._note = None
        self._failures = self._trips = 0
        return True

    async def _send(self, run: dict[str, Any]) -> None:
        """Create one run; LangSmith already having it (409) counts as accepted."""
        assert self._client is not None
        try:
            await asyncio.to_thread(self._client.create_run, **run)
        except ls_utils.LangSmithConflictError:
            self.log.debug("run %s was already received", run["id"])

    def _pause(self, error: str) -> None:
        self._trips += 1
        pause = min(MAX_PAUSE, self.config.backoff_base * 2 ** min(self._trips - 1, 30))
        pause *= random.uniform(0.5, 1.0)
        self._paused_until = time.monotonic() + pause
        self._failures = 0
        self._note = f"backing off {pause:.0f}s: {TRIP_AFTER} exchanges in a row failed, the last: {error}"
        self.log.warning("pausing for %.0fs: %s exchanges in a row failed", pause, TRIP_AFTER)
