"""Token, login cookie, CSRF and autoescaping; /metrics parses and has every metric."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from web.security import COOKIE, csrf_token

TOKEN = "s3cret-token"


async def test_every_route_but_healthz_and_login_needs_the_token(make_client: Callable[..., Any]) -> None:
    client: TestClient = await make_client(BGAGENTS_TOKEN=TOKEN)
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/login")).status == 200
    for path in ("/api/agents/status", "/api/events", "/metrics"):
        resp = await client.get(path)
        assert resp.status == 401, path
        assert "Bearer" in (await resp.json())["hint"]
    page = await client.get("/", allow_redirects=False)
    assert page.status == 303 and page.headers["Location"].startswith("/login")
    ok = await client.get("/api/agents/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status == 200
    wrong = await client.get("/api/agents/status", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401


async def test_login_cookie_and_csrf(make_client: Callable[..., Any]) -> None:
    client: TestClient = await make_client(BGAGENTS_TOKEN=TOKEN)
    bad = await client.post("/login", data={"token": "nope", "next": "/"}, allow_redirects=False)
    assert bad.status == 401
    resp = await client.post(
        "/login", data={"token": TOKEN, "next": "/api/agents/status"}, allow_redirects=False
    )
    assert resp.status == 303
    cookie = resp.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert TOKEN not in cookie.value
    assert (await client.get("/api/agents/status")).status == 200  # the cookie now authenticates
    # Unsafe methods with the cookie need the CSRF token...
    no_csrf = await client.post("/api/tasks/cancel", data={"queue": "x"})
    assert no_csrf.status == 403
    with_csrf = await client.post(
        "/api/tasks/cancel", data={"queue": "x"}, headers={"X-CSRF-Token": csrf_token(TOKEN)}
    )
    assert with_csrf.status == 200
    in_form = await client.post("/api/tasks/cancel", data={"queue": "x", "csrf_token": csrf_token(TOKEN)})
    assert in_form.status == 200


async def test_bearer_clients_need_no_csrf(make_client: Callable[..., Any]) -> None:
    client: TestClient = await make_client(BGAGENTS_TOKEN=TOKEN)
    resp = await client.post(
        "/api/tasks/cancel", json={"queue": "x"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert resp.status == 200


async def test_login_page_escapes_what_it_echoes(make_client: Callable[..., Any]) -> None:
    client: TestClient = await make_client(BGAGENTS_TOKEN=TOKEN)
    page = await (await client.get('/login?next="><script>alert(1)</script>')).text()
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;" in page


async def test_metrics_parse_and_cover_every_documented_metric(client: TestClient, db_url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "insert into bg.agents (instance_id, name, host, pid, status, last_beat_at) "
            "values ('p@h', 'performance', 'h', 1, 'running', now())"
        )
        await conn.execute("select bg.enqueue('q1', '{}')")
        await conn.execute(
            "insert into bg.alerts (fingerprint, rule, severity, state) "
            "values ('f', 'agent_down', 'critical', 'firing')"
        )
        await conn.execute("select bg.publish('x', '{}')")
    finally:
        await conn.close()
    await client.get("/api/agents/status")  # so the duration histogram has a sample
    text = await (await client.get("/metrics")).text()
    names = {f.name for f in text_string_to_metric_families(text)}
    for name in (
        "bgagents_agent_status",
        "bgagents_agent_health",
        "bgagents_heartbeat_age_seconds",
        "bgagents_alerts",
        "bgagents_queue_depth",
        "bgagents_queue_oldest_age_seconds",
        "bgagents_tasks",
        "bgagents_events",
        "bgagents_sse_clients",
        "bgagents_http_request_duration_seconds",
    ):
        assert name in names, name
