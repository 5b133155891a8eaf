"""The langsmith-bridge against a stub LangSmith: runs, retries, 409s, ids, no key.

The stub implements what ``langsmith.Client.create_run`` calls without
batching (``POST /runs``), plus ``GET /info``. It stores each run once, answers
409 for a run id it already has, and can fail its next N requests with 500.
The bridge turns off the SDK's own HTTP retries, so each failure reaches the
outbox and the counts below are exact.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from agents.builtin.langsmith_bridge import LangSmithBridge, build_runs, uuid7_for
from bus import langsmith as ls_outbox
from bus.client import Bus

API_KEY = "lsv2_test_key"
STARTED = datetime(2026, 5, 4, 12, 30, 15, 123456, tzinfo=UTC)
FINISHED = STARTED + timedelta(seconds=1.5)


@dataclass
class StubLangSmith:
    """Just enough of the LangSmith API for ``create_run``."""

    url: str = ""
    fail_next: int = 0
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.0.0-stub", "instance_flags": {}, "batch_ingest_config": {}})

    async def create_run(self, request: web.Request) -> web.Response:
        response = await self._create_run(request)
        self.statuses.append(response.status)
        return response

    async def _create_run(self, request: web.Request) -> web.Response:
        if request.headers.get("x-api-key") != API_KEY:
            return web.json_response({"detail": "bad key"}, status=401)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"detail": "stub outage"}, status=500)
        run = await request.json()
        if run["id"] in self.runs:
            return web.json_response({"detail": "run already exists"}, status=409)
        self.runs[run["id"]] = run
        return web.json_response({"message": "Run created"}, status=202)

    async def other(self, request: web.Request) -> web.Response:
        self.unexpected.append(f"{request.method} {request.path}")
        return web.json_response({"detail": "not in the stub"}, status=404)


@pytest.fixture
async def stub() -> AsyncIterator[StubLangSmith]:
    server = StubLangSmith()
    app = web.Application()
    app.router.add_get("/info", server.info)
    app.router.add_post("/runs", server.create_run)
    app.router.add_route("*", "/{tail:.*}", server.other)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    await runner.cleanup()
    assert not server.unexpected


@pytest.fixture
async def bus(db_url: str, settings_for: Callable[..., Any]) -> AsyncIterator[Bus]:
    async with Bus.connect(settings_for(db_url), listen=False) as connected:
        yield connected


@pytest.fixture
async def bridge(
    bus: Bus, stub: StubLangSmith, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[LangSmithBridge]:
    for name in ("LANGCHAIN_API_KEY", "LANGCHAIN_ENDPOINT", "LANGSMITH_RUNS_ENDPOINTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANGSMITH_API_KEY", API_KEY)
    monkeypatch.setenv("LANGSMITH_ENDPOINT", stub.url)
    agent = LangSmithBridge(bus)
    await agent.setup()
    assert agent.status_note() is None
    yield agent
    await agent.teardown()


async def add_exchange(bus: Bus, question: str = "which agent is down?") -> int:
    exchange_id: int = await bus.pool.fetchval(
        "insert into bg.llm_conversations (question, context_ids, answer, model, mode, prompt_tokens, "
        "completion_tokens, latency_ms, started_at, finished_at) "
        "values ($1, $2, 'performance on h1 is down [1]', 'gpt-4o-mini', 'chat', 120, 30, 1500, $3, $4) "
        "returning id",
        question,
        ["README.md#Agents"],
        STARTED,
        FINISHED,
    )
    return exchange_id


async def outbox(bus: Bus, exchange_id: int) -> Any:
    return await bus.pool.fetchrow(
        "select forwarded_at, forward_attempts, last_forward_error, next_attempt_at > now() as later "
        "from bg.llm_conversations where id = $1",
        exchange_id,
    )


async def make_due(bus: Bus, exchange_id: int) -> None:
    await bus.pool.execute(
        "update bg.llm_conversations set next_attempt_at = now() where id = $1", exchange_id
    )


def stamp(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_an_exchange_becomes_a_chain_run_with_an_llm_run_under_it(
    bus: Bus, stub: StubLangSmith, bridge: LangSmithBridge
) -> None:
    exchange_id = await add_exchange(bus)
    await bridge.run_once()

    assert len(stub.runs) == 2 and stub.statuses == [202, 202]
    (parent,) = [r for r in stub.runs.values() if r["run_type"] == "chain"]
    (child,) = [r for r in stub.runs.values() if r["run_type"] == "llm"]
    assert parent["id"] == str(uuid7_for(exchange_id, STARTED, "exchange"))
    assert child["id"] == str(uuid7_for(exchange_id, STARTED, "llm"))
    assert child["parent_run_id"] == parent["id"] and parent.get("parent_run_id") is None
    assert parent["trace_id"] == child["trace_id"] == parent["id"]
    assert child["dotted_order"] == f"{parent['dotted_order']}.20260504T123015123456Z{child['id']}"
    assert parent["dotted_order"] == f"20260504T123015123456Z{parent['id']}"
    assert (parent["name"], child["name"]) == ("ai-help", "gpt-4o-mini")
    assert parent["session_name"] == child["session_name"] == "bgagents"
    for run in (parent, child):
        assert (stamp(run["start_time"]), stamp(run["end_time"])) == (STARTED, FINISHED)
    assert parent["inputs"] == {"question": "which agent is down?"}
    assert parent["outputs"]["answer"] == "performance on h1 is down [1]"
    assert child["inputs"]["messages"] == [{"role": "user", "content": "which agent is down?"}]
    assert child["outputs"]["choices"][0]["message"]["content"] == "performance on h1 is down [1]"
    usage = {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150}
    assert child["outputs"]["usage_metadata"] == usage
    metadata = child["extra"]["metadata"]
    assert (metadata["ls_model_name"], metadata["ls_provider"]) == ("gpt-4o-mini", "openai")

    row = await outbox(bus, exchange_id)
    assert row["forwarded_at"] is not None and row["forward_attempts"] == 1
    await bridge.run_once()  # nothing is due any more
    assert len(stub.statuses) == 2


async def test_failures_back_off_and_nothing_is_lost_or_sent_twice(
    bus: Bus, stub: StubLangSmith, bridge: LangSmithBridge
) -> None:
    exchange_id = await add_exchange(bus)
    stub.fail_next = 2
    await bridge.run_once()
    assert stub.statuses == [500]  # one request: the SDK does not retry, and the llm run waits
    row = await outbox(bus, exchange_id)
    assert row["forwarded_at"] is None and row["forward_attempts"] == 1 and row["later"]
    assert "500" in row["last_forward_error"] and API_KEY not in row["last_forward_error"]
    await bridge.run_once()  # not due yet
    assert stub.statuses == [500]

    runs = 0
    while (await outbox(bus, exchange_id))["forwarded_at"] is None:
        runs += 1
        assert runs <= 3
        await make_due(bus, exchange_id)
        await bridge.run_once()
    assert runs == 2 and stub.statuses == [500, 500, 202, 202]
    assert len(stub.runs) == 2
    assert (await outbox(bus, exchange_id))["forward_attempts"] == 3


async def test_a_run_langsmith_already_has_counts_as_accepted(
    bus: Bus, stub: StubLangSmith, bridge: LangSmithBridge
) -> None:
    first = await add_exchange(bus)
    parent_id = str(uuid7_for(first, STARTED, "exchange"))
    stub.runs[parent_id] = {"id": parent_id, "run_type": "chain"}  # sent before a crash
    await bridge.run_once()
    assert stub.statuses == [409, 202]
    assert (await outbox(bus, first))["forwarded_at"] is not None

    # Forwarded but not marked (a crash after the send): sent again, it is the same two runs.
    await bus.pool.execute(
        "update bg.llm_conversations set forwarded_at = null, next_attempt_at = now() where id = $1", first
    )
    await bridge.run_once()
    assert stub.statuses == [409, 202, 409, 409] and len(stub.runs) == 2
    assert (await outbox(bus, first))["forwarded_at"] is not None


async def test_run_ids_are_deterministic_uuid7s(bus: Bus) -> None:
    a = uuid7_for(42, STARTED, "exchange")
    assert a == uuid7_for(42, STARTED, "exchange")
    assert a != uuid7_for(43, STARTED, "exchange") and a != uuid7_for(42, STARTED, "llm")
    assert a.version == 7 and a.variant == uuid.RFC_4122
    assert a.int >> 80 == int(STARTED.timestamp() * 1000)
    hashed = int.from_bytes(hashlib.sha256(b"42:exchange").digest()[:10], "big") >> 6
    assert (a.int >> 64) & 0xFFF == hashed >> 62 and a.int & ((1 << 62) - 1) == hashed & ((1 << 62) - 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        uuid7_for(42, STARTED.replace(tzinfo=None), "exchange")

    exchange_id = await add_exchange(bus)
    row = await bus.pool.fetchrow("select * from bg.llm_conversations where id = $1", exchange_id)
    once, again = build_runs(row, "p"), build_runs(row, "p")
    assert [r["id"] for r in once] == [r["id"] for r in again]


async def test_two_failures_in_a_batch_pause_the_bridge_and_hand_the_rest_back(
    bus: Bus, stub: StubLangSmith, bridge: LangSmithBridge
) -> None:
    ids = [await add_exchange(bus, f"question {n}") for n in range(3)]
    stub.fail_next = 100
    await bridge.run_once()
    assert stub.statuses == [500, 500]
    assert [(await outbox(bus, i))["forward_attempts"] for i in ids] == [1, 1, 0]
    assert not (await outbox(bus, ids[2]))["later"]  # handed back: due now, for any bridge
    assert (bridge.status_note() or "").startswith("backing off")
    await bridge.run_once()  # paused
    assert stub.statuses == [500, 500]


async def test_bridges_claim_disjoint_rows_and_a_dead_bridges_rows_come_back(bus: Bus) -> None:
    ids = {await add_exchange(bus, f"question {n}") for n in range(30)}
    first, second = await asyncio.gather(
        ls_outbox.claim(bus.pool, 20, 300.0), ls_outbox.claim(bus.pool, 20, 300.0)
    )
    mine, theirs = {r["id"] for r in first}, {r["id"] for r in second}
    assert not mine & theirs and mine | theirs == ids
    assert await ls_outbox.claim(bus.pool, 20, 300.0) == []  # all leased
    await bus.pool.execute(
        "update bg.llm_conversations set next_attempt_at = now() where id = any($1)", list(mine)
    )
    assert {r["id"] for r in await ls_outbox.claim(bus.pool, 50, 300.0)} == mine  # lease ran out


async def test_without_a_key_the_bridge_idles_and_says_why(
    bus: Bus, stub: StubLangSmith, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANGSMITH_ENDPOINT", stub.url)
    exchange_id = await add_exchange(bus)
    idle = LangSmithBridge(bus)
    await idle.setup()
    await idle.run_once()
    await idle.teardown()
    assert (idle.status_note() or "").startswith("idle: LANGSMITH_API_KEY is not set")
    assert stub.statuses == []
    row = await outbox(bus, exchange_id)
    assert row["forwarded_at"] is None and row["forward_attempts"] == 0 and not row["later"]
