"""Token, login cookie, CSRF, the Host allow-list, same-origin writes, security headers and
autoescaping; /metrics parses and has every metric."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient, make_mocked_request
from prometheus_client.parser import text_string_to_metric_families

from bus.config import load_settings
from web.keys import SETTINGS
from web.security import COOKIE, csrf_token, host_refusal, origin_refusal

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
    page = await (await client.get('/login?next=/x"><script>alert(1)</script>')).text()
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


# Non-ASCII secrets: hmac.compare_digest on str raises TypeError, which used to be a 500.


async def test_non_ascii_bearer_tokens_cookies_and_csrf_tokens_are_a_401_or_403(
    make_client: Callable[..., Any],
) -> None:
    client: TestClient = await make_client(BGAGENTS_TOKEN=TOKEN)
    resp = await client.get("/api/agents/status", headers={"Authorization": "Bearer tök€n"})
    assert resp.status == 401
    resp = await client.get("/api/agents/status", headers={"Cookie": f"{COOKIE}=tök€n"})
    assert resp.status == 401
    resp = await client.post("/login", data={"token": "tök€n", "next": "/"}, allow_redirects=False)
    assert resp.status == 401
    await client.post("/login", data={"token": TOKEN, "next": "/"}, allow_redirects=False)
    resp = await client.post("/api/tasks/cancel", data={"queue": "x"}, headers={"X-CSRF-Token": "tök€n"})
    assert resp.status == 403


async def test_a_non_ascii_token_setting_works_as_bearer_and_cookie(make_client: Callable[..., Any]) -> None:
    client: TestClient = await make_client(BGAGENTS_TOKEN="s3cret-tök€n")
    ok = await client.get("/api/agents/status", headers={"Authorization": "Bearer s3cret-tök€n"})
    assert ok.status == 200
    resp = await client.post("/login", data={"token": "s3cret-tök€n", "next": "/"}, allow_redirects=False)
    assert resp.status == 303


# The Host allow-list: DNS rebinding sends a foreign Host.


async def test_a_foreign_host_gets_a_421_and_the_known_names_are_answered(client: TestClient) -> None:
    port = client.port
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.2", "localhost.evil.example", "a b"):
        resp = await client.get("/api/health", headers={"Host": host})
        assert resp.status in (400, 421), host
        body = await resp.json()
        assert "BGAGENTS_ALLOWED_HOSTS" in body["hint"], host
    refused = await client.post("/api/tasks/cancel", data={"queue": "x"}, headers={"Host": "evil.example"})
    assert refused.status == 421
    assert (await client.get("/", headers={"Host": "evil.example"})).status == 421
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "localhost."):
        assert (await client.get("/api/health", headers={"Host": host})).status == 200, host
    assert (await client.get("/healthz", headers={"Host": "10.1.2.3:8000"})).status == 200


async def test_allowed_hosts_and_the_bound_name_are_answered(make_client: Callable[..., Any]) -> None:
    client: TestClient = await make_client(
        BGAGENTS_ALLOWED_HOSTS="dash.example.com,[fd00::5]",
        BGAGENTS_HOST="box.internal",
        BGAGENTS_TOKEN=TOKEN,
    )
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for host in ("dash.example.com", "DASH.example.com:443", "[fd00::5]:8000", "box.internal:8000"):
        assert (await client.get("/api/health", headers={**bearer, "Host": host})).status == 200, host
    assert (await client.get("/api/health", headers={**bearer, "Host": "other.example.com"})).status == 421


def _settings(**env: str) -> Any:
    return load_settings({"DATABASE_URL": "postgresql://u@h/d", **env}, env_file=None)


def _mocked(method: str, path: str, headers: dict[str, str], peer: str, **env: str) -> Any:
    from unittest import mock

    from aiohttp import web

    app = web.Application()
    app[SETTINGS] = _settings(**env)
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda key, default=None: (
        (peer, 40000) if key == "peername" else default
    )
    return make_mocked_request(method, path, headers=headers, app=app, transport=transport)


def test_a_request_without_a_host_header_gets_a_400() -> None:
    refusal = host_refusal(_mocked("GET", "/api/health", {}, "127.0.0.1"))
    assert refusal is not None and refusal.status == 400


def test_without_origin_or_fetch_metadata_only_loopback_may_write_without_a_token() -> None:
    host = {"Host": "127.0.0.1:8000"}
    for peer in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert origin_refusal(_mocked("POST", "/api/tasks/cancel", host, peer)) is None, peer
    for peer in ("10.0.0.5", "::ffff:10.0.0.5", ""):
        refusal = origin_refusal(_mocked("POST", "/api/tasks/cancel", host, peer))
        assert refusal is not None and refusal.status == 403, peer
    # With a token, such a request still has to show the token or the cookie and CSRF token.
    assert (
        origin_refusal(_mocked("POST", "/api/tasks/cancel", host, "10.0.0.5", BGAGENTS_TOKEN=TOKEN)) is None
    )
    # Reads are not writes.
    assert origin_refusal(_mocked("GET", "/api/health", host, "10.0.0.5")) is None


async def _queued_task(db_url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        task_id: int = await conn.fetchval("select bg.enqueue('victim', '{}')")
    finally:
        await conn.close()
    return task_id


async def _status(db_url: str, task_id: int) -> str:
    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        status: str = await conn.fetchval("select status from bg.tasks where id = $1", task_id)
    finally:
        await conn.close()
    return status


async def test_cross_origin_writes_are_refused_and_change_nothing(client: TestClient, db_url: str) -> None:
    task_id = await _queued_task(db_url)
    own = f"http://127.0.0.1:{client.port}"
    hostile: list[dict[str, str]] = [
        {"Origin": "http://evil.example"},
        {"Origin": f"http://127.0.0.1:{client.port + 1}"},  # same site, other port: another origin
        {"Origin": f"https://127.0.0.1:{client.port}"},  # other scheme
        {"Origin": "null"},  # sandboxed frames, file: pages
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": own},
        {"Origin": "http://evil.example", "HX-Request": "true", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "http://evil.example", "HX-Request": "true"},
    ]
    for headers in hostile:
        resp = await client.post("/api/tasks/cancel", data={"queue": "victim"}, headers=headers)
        assert resp.status == 403, headers
        assert "cross-origin" in (await resp.json())["error"]
        resp = await client.post(
            "/api/silences", data={"matchers": "agent=x", "duration": "3600"}, headers=headers
        )
        assert resp.status == 403, headers
    assert await _status(db_url, task_id) == "queued"
    assert (await (await client.get("/api/silences")).json())["silences"] == []


async def test_same_origin_writes_and_scripts_without_origin_are_accepted(
    client: TestClient, db_url: str
) -> None:
    own = f"http://127.0.0.1:{client.port}"
    for headers in (
        {"Origin": own, "Sec-Fetch-Site": "same-origin", "HX-Request": "true"},
        {"Origin": own},
        {"Origin": f"http://localhost:{client.port}", "Host": f"localhost:{client.port}"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": f"https://127.0.0.1:{client.port}", "X-Forwarded-Proto": "https"},  # behind a TLS proxy
        {},  # curl, scripts: from loopback
    ):
        resp = await client.post("/api/tasks/cancel", data={"queue": "victim"}, headers=headers)
        assert resp.status == 200, headers


async def test_cross_site_reads_of_the_api_are_refused_unless_they_are_navigations(
    client: TestClient,
) -> None:
    cross = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}
    for path in ("/api/health", "/partials/health", "/metrics", "/api/events"):
        assert (await client.get(path, headers=cross)).status == 403, path
    assert (
        await client.get("/api/health", headers={"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors"})
    ).status == 403
    navigate = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert (await client.get("/api/health", headers=navigate)).status == 200
    assert (await client.get("/api/health", headers={"Sec-Fetch-Site": "same-origin"})).status == 200


async def test_with_a_token_cross_origin_cookie_writes_are_refused_but_bearer_clients_are_not(
    make_client: Callable[..., Any], db_url: str
) -> None:
    client: TestClient = await make_client(BGAGENTS_TOKEN=TOKEN)
    task_id = await _queued_task(db_url)
    await client.post("/login", data={"token": TOKEN, "next": "/"}, allow_redirects=False)
    csrf = {"X-CSRF-Token": csrf_token(TOKEN)}
    resp = await client.post(
        "/api/tasks/cancel", data={"queue": "victim"}, headers={**csrf, "Origin": "http://evil.example"}
    )
    assert resp.status == 403
    login = await client.post(
        "/login",
        data={"token": TOKEN, "next": "/"},
        headers={"Sec-Fetch-Site": "cross-site"},
        allow_redirects=False,
    )
    assert login.status == 403
    assert await _status(db_url, task_id) == "queued"
    resp = await client.post(
        "/api/tasks/cancel",
        data={"queue": "victim"},
        headers={"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"},
    )
    assert resp.status == 200
    assert await _status(db_url, task_id) == "cancelled"


# Security headers on every response.

EVERYWHERE = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


async def test_every_response_has_the_security_headers(client: TestClient) -> None:
    for path in (
        "/",
        "/alerts",
        "/api/health",
        "/partials/agents",
        "/metrics",
        "/static/app/app.css",
        "/api/nope",
        "/tasks/99999999",
        "/login",
    ):
        resp = await client.get(path)
        for name, value in EVERYWHERE.items():
            assert resp.headers.get(name) == value, (path, name)
        csp = {d.split()[0]: d.split()[1:] for d in resp.headers["Content-Security-Policy"].split("; ")}
        assert csp["default-src"] == ["'self'"], path
        assert csp["frame-ancestors"] == ["'none'"] and csp["base-uri"] == ["'none'"], path
        assert csp["form-action"] == ["'self'"] and csp["object-src"] == ["'none'"], path
        for directive in ("script-src", "style-src"):
            assert csp[directive] == ["'self'"], (path, directive)  # no unsafe-inline, no unsafe-eval
    refused = await client.get("/api/health", headers={"Host": "evil.example"})
    assert refused.headers["X-Frame-Options"] == "DENY"


async def test_api_partials_pages_and_metrics_are_no_store_but_static_files_are_not(
    client: TestClient,
) -> None:
    for path in ("/", "/api/health", "/api/agents/status", "/partials/health", "/metrics", "/api/nope"):
        assert (await client.get(path)).headers.get("Cache-Control") == "no-store", path
    assert (await client.get("/static/app/app.css")).headers.get("Cache-Control") != "no-store"


async def test_the_sse_stream_has_the_security_headers(client: TestClient) -> None:
    async with client.get("/api/events") as resp:
        assert resp.status == 200
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Cache-Control"] == "no-store"
