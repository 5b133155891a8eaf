"""The JSON API against a real database: answers, validation and errors."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bus.config import load_settings
from bus.errors import (
    BgError,
    ConfigError,
    ConflictError,
    DatabaseError,
    DatabaseUnavailable,
    FeatureUnavailable,
    InvalidArgument,
    NotFound,
    SchemaNotReady,
)
from web.api.common import error_middleware
from web.app import check_bind


async def test_healthz_needs_no_database_round_trip(client: TestClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "service": "bgagents"}


async def _agent(db_url: str, name: str, health: str = "up") -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "insert into bg.agents (instance_id, name, host, pid, status, health, last_beat_at) "
            "values ($1, $2, 'h1', 42, 'running', $3, now())",
            f"{name}@h1",
            name,
            health,
        )
    finally:
        await conn.close()


async def test_agents_status_and_health(client: TestClient, db_url: str) -> None:
    await _agent(db_url, "performance")
    body = await (await client.get("/api/agents/status")).json()
    [agent] = body["agents"]
    assert (agent["name"], agent["status"], agent["health"], agent["pid"], agent["host"]) == (
        "performance",
        "running",
        "up",
        42,
        "h1",
    )
    assert agent["last_beat_at"]
    assert (await client.get("/api/health")).status == 200
    await _agent(db_url, "heartbeat", health="down")
    resp = await client.get("/api/health")
    assert resp.status == 503
    assert (await resp.json())["healthy"] is False


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("/api/tasks?status=bogus", "status"),
        ("/api/tasks?limit=lots", "limit"),
        ("/api/alerts?state=maybe", "state"),
        ("/api/alerts?acked=perhaps", "acked"),
        ("/api/metrics?metric=host.cpu_percent&since=yesterday-ish", "since"),
        ("/api/events?channels=bad%20name", "channels"),
        ("/api/events?after=not-a-cursor", "after"),
    ],
)
async def test_bad_parameters_get_a_400_naming_them(client: TestClient, url: str, param: str) -> None:
    resp = await client.get(url)
    assert resp.status == 400
    body = await resp.json()
    assert param in body["error"]


async def test_tasks_detail_retry_cancel_and_bulk(client: TestClient, db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        queued = await conn.fetchval("select bg.enqueue('web', '{\"n\": 1}')")
        failed = await conn.fetchval("select bg.enqueue('web', '{\"n\": 2}')")
        await conn.execute(
            "update bg.tasks set status = 'failed', last_traceback = 'Traceback: boom' where id = $1", failed
        )
    finally:
        await conn.close()
    listing = await (await client.get("/api/tasks?queue=web")).json()
    assert {t["id"] for t in listing["tasks"]} == {queued, failed}
    detail = await (await client.get(f"/api/tasks/{failed}")).json()
    assert detail["task"]["last_traceback"] == "Traceback: boom"
    assert (await client.get("/api/tasks/999999")).status == 404
    assert (await (await client.post(f"/api/tasks/{failed}/retry")).json())["status"] == "queued"
    assert (await client.post(f"/api/tasks/{failed}/retry")).status == 400  # not failed any more
    assert (await (await client.post(f"/api/tasks/{queued}/cancel")).json())["status"] == "cancelled"
    bulk = await client.post("/api/tasks/cancel", data={"queue": "web", "status": "queued"})
    assert (await bulk.json())["count"] == 1
    bulk = await client.post("/api/tasks/retry", json={"queue": "web", "status": "cancelled"})
    assert (await bulk.json())["count"] == 2


async def _alert(db_url: str) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        alert_id: int = await conn.fetchval(
            "insert into bg.alerts (fingerprint, rule, labels, severity, summary, state, fired_at) "
            'values (\'fp1\', \'agent_down\', \'{"agent": "performance", "host": "h1"}\', '
            "'critical', 'performance is down', 'firing', now()) returning id"
        )
        return alert_id
    finally:
        await conn.close()


async def test_acknowledge_filter_and_silence_alerts(client: TestClient, db_url: str) -> None:
    alert_id = await _alert(db_url)
    assert [
        a["id"] for a in (await (await client.get("/api/alerts?state=firing&acked=false")).json())["alerts"]
    ] == [alert_id]
    resp = await client.post(f"/api/alerts/{alert_id}/ack", data={"comment": "on it", "expires_in": "600"})
    assert resp.status == 200
    alert = (await resp.json())["alert"]
    assert (alert["ack_comment"], alert["acked_by"]) == ("on it", "web")
    assert (await (await client.get("/api/alerts?acked=true")).json())["alerts"][0]["id"] == alert_id
    assert (await client.post(f"/api/alerts/{alert_id}/ack", json={"expires_in": "soon"})).status == 400
    assert (await client.post("/api/alerts/424242/ack", json={})).status == 404

    created = await client.post("/api/silences", json={"matchers": {"agent": "performance"}, "duration": 60})
    assert created.status == 201
    silence_id = (await created.json())["id"]
    silenced = (await (await client.get("/api/alerts?silenced=true")).json())["alerts"]
    assert [a["id"] for a in silenced] == [alert_id]
    assert (await (await client.get("/api/silences")).json())["silences"][0]["active"] is True
    assert (await client.delete(f"/api/silences/{silence_id}")).status == 200
    assert (await client.delete(f"/api/silences/{silence_id}")).status == 404
    assert (await client.post("/api/silences", json={"matchers": {}})).status == 400


async def _alerts(db_url: str, prefix: str, count: int, age_s: float, *, acked: bool, agent: str) -> None:
    """``count`` firing alerts that started about ``age_s`` seconds ago, acknowledged or not."""
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "insert into bg.alerts (fingerprint, rule, labels, severity, summary, state, fired_at, "
            "started_at, acked_by, acked_at, ack_expires_at) "
            "select $1 || n, 'threshold', jsonb_build_object('agent', $5::text), 'warning', 'x', "
            "'firing', now(), now() - make_interval(secs => $3 + n), "
            "case when $4 then 'ops' end, case when $4 then now() end, "
            "case when $4 then now() + interval '1 hour' end "
            "from generate_series(1, $2) as n",
            prefix,
            count,
            age_s,
            acked,
            agent,
        )
    finally:
        await conn.close()


async def test_acked_filter_applies_before_the_limit(client: TestClient, db_url: str) -> None:
    """Until the filters moved into SQL, web applied them after SQL's LIMIT: here the newest
    three alerts are acknowledged, so ``?acked=false&limit=3`` came back empty."""
    await _alerts(db_url, "old-", 5, 600, acked=False, agent="a")
    await _alerts(db_url, "new-", 4, 0, acked=True, agent="a")
    found = (await (await client.get("/api/alerts?acked=false&limit=3")).json())["alerts"]
    assert len(found) == 3
    assert all(a["acked"] is False and a["fingerprint"].startswith("old-") for a in found)
    found = (await (await client.get("/api/alerts?acked=true&limit=3")).json())["alerts"]
    assert len(found) == 3
    assert all(a["acked"] is True for a in found)


async def test_silenced_filter_applies_before_the_limit(client: TestClient, db_url: str) -> None:
    await _alerts(db_url, "loud-", 5, 600, acked=False, agent="loud")
    await _alerts(db_url, "muted-", 4, 0, acked=False, agent="muted")
    created = await client.post("/api/silences", json={"matchers": {"agent": "muted"}, "duration": 600})
    assert created.status == 201
    found = (await (await client.get("/api/alerts?silenced=false&limit=3")).json())["alerts"]
    assert len(found) == 3
    assert all(a["silenced"] is False and a["labels"] == {"agent": "loud"} for a in found)
    found = (await (await client.get("/api/alerts?silenced=true&state=firing&limit=2")).json())["alerts"]
    assert len(found) == 2
    assert all(a["silenced"] is True for a in found)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidArgument("bad value", hint="fix it"), 400),
        (NotFound("no such thing", hint="look elsewhere"), 404),
        (ConflictError("changed since read", hint="read it again"), 409),
        (DatabaseUnavailable("server restarting", hint="retry"), 503),
        (SchemaNotReady("no schema"), 503),
        (FeatureUnavailable("no pgvector", hint="install it"), 503),
        (DatabaseError("refused", hint="see the log"), 503),
        (BgError("something else", hint="hmm"), 503),
    ],
)
async def test_error_middleware_maps_error_types_to_statuses(
    aiohttp_client: Any, error: BgError, status: int
) -> None:
    """No endpoint raises ConflictError yet, so a tiny app checks the middleware's whole mapping."""

    async def fails(request: web.Request) -> web.Response:
        raise error

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/fails", fails, name="fails")
    client: TestClient = await aiohttp_client(app)
    resp = await client.get("/fails")
    assert resp.status == status
    assert await resp.json() == {"error": error.message, "hint": error.hint}


async def test_agent_command(client: TestClient, db_url: str) -> None:
    await _agent(db_url, "performance")
    resp = await client.post("/api/agents/performance/command", data={"command": "pause"})
    assert (await resp.json())["instances"] == 1
    assert (await client.post("/api/agents/performance/command", json={"command": "dance"})).status == 400
    missing = await client.post("/api/agents/nobody/command", json={"command": "pause"})
    assert missing.status == 404
    assert "performance" in (await missing.json())["hint"]


async def test_metrics_series(client: TestClient, db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "insert into bg.performance_metrics (host, source, metric, value) "
            "values ('h1', 'host', 'host.cpu_percent', 12.5)"
        )
    finally:
        await conn.close()
    names = (await (await client.get("/api/metrics")).json())["metrics"]
    assert names == ["host.cpu_percent"]
    series = await (await client.get("/api/metrics?metric=host.cpu_percent&since=600")).json()
    assert [s["value"] for s in series["samples"]] == [12.5]


def test_refuses_to_bind_beyond_loopback_without_a_token() -> None:
    with pytest.raises(ConfigError, match="BGAGENTS_TOKEN"):
        check_bind(load_settings({"BGAGENTS_HOST": "0.0.0.0"}, env_file=None))
    check_bind(load_settings({"BGAGENTS_HOST": "0.0.0.0", "BGAGENTS_TOKEN": "s3cret"}, env_file=None))
