"""The browser-facing defenses in Chromium: other origins change and read nothing, a rebound
name is refused, the dashboard's own buttons still work (with and without a token), and the CSP
blocks injected inline script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from tests.browser.conftest import CHROMIUM, FLAGS
from tests.waiting import eventually
from web.app import create_app

TOKEN = "br0wser-token"

ATTACK_FETCH = """<!doctype html><html><body><p>Totally harmless page</p><script>
const api = "{api}";
window.results = {{}};
fetch(api + "/api/health").then(r => r.text()).then(
  t => {{ results.read = t; }}, () => {{ results.read = "blocked"; }});
fetch(api + "/api/silences", {{method: "POST", mode: "no-cors",
  body: new URLSearchParams({{matchers: "agent=fetch", duration: "3600"}})}}).then(
  r => {{ results.post = r.type; }}, () => {{ results.post = "error"; }});
fetch(api + "/api/silences", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}}, body: '{{"matchers": {{"agent": "plain"}}}}'}}).then(
  r => {{ results.plain = r.type; }}, () => {{ results.plain = "error"; }});
fetch(api + "/api/silences", {{method: "POST", headers: {{"Content-Type": "application/json",
  "HX-Request": "true"}}, body: '{{"matchers": {{"agent": "cors"}}}}'}}).then(
  r => {{ results.cors = r.status; }}, () => {{ results.cors = "blocked"; }});
</script></body></html>"""

ATTACK_FORM = """<!doctype html><html><body>
<form method="post" action="{api}/api/tasks/cancel"><input name="queue" value="victim"></form>
<script>window.addEventListener("load", () => document.forms[0].submit());</script></body></html>"""


async def _attacker(aiohttp_server: Any, api: str) -> Any:
    async def fetch_page(request: web.Request) -> web.Response:
        return web.Response(text=ATTACK_FETCH.format(api=api), content_type="text/html")

    async def form_page(request: web.Request) -> web.Response:
        return web.Response(text=ATTACK_FORM.format(api=api), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", fetch_page)
    app.router.add_get("/form", form_page)
    return await aiohttp_server(app)


async def test_a_page_from_another_origin_can_neither_change_nor_read_anything(
    db_url: str, browser: Any, assets_present: None, aiohttp_server: Any, settings_for: Any
) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        task_id = await conn.fetchval("select bg.enqueue('victim', '{}')")
        app = create_app(settings_for(db_url))
        answered: list[int] = []  # what the server answered the posts to /api/silences

        async def record(request: web.Request, response: web.StreamResponse) -> None:
            if request.method == "POST" and request.path == "/api/silences":
                answered.append(response.status)

        app.on_response_prepare.append(record)
        server = await aiohttp_server(app)
        api = f"http://127.0.0.1:{server.port}"
        evil = await _attacker(aiohttp_server, api)  # same site (127.0.0.1), another origin (port)
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{evil.port}/")
        results = await page.wait_for_function(
            "() => ['read', 'post', 'plain', 'cors'].every(k => k in window.results) && window.results",
            timeout=15000,
        )
        seen = await results.json_value()
        assert seen["read"] == "blocked"  # no CORS: the answer never reaches the page
        # no-cors posts are sent (and refused); even their opaque answer is withheld (CORP)
        assert seen["post"] == "error" and seen["plain"] == "error"
        assert seen["cors"] == "blocked"  # the preflight is never approved
        await eventually(lambda: len(answered) >= 2, timeout=10, what="both no-cors posts answered")
        assert answered == [403, 403]
        async with page.expect_response(lambda r: r.url.endswith("/api/tasks/cancel")) as info:
            await page.goto(f"http://127.0.0.1:{evil.port}/form")
        response = await info.value
        assert response.status == 403
        assert "cross-origin" in (await response.json())["error"]
        assert await conn.fetchval("select status from bg.tasks where id = $1", task_id) == "queued"
        assert await conn.fetchval("select count(*) from bg.silences") == 0
        await page.close()
    finally:
        await conn.close()


async def test_a_rebound_host_name_is_refused(
    db_url: str, assets_present: None, aiohttp_server: Any, settings_for: Any
) -> None:
    """DNS rebinding: a hostile name that resolves to 127.0.0.1 is same-origin with itself."""
    if not Path(CHROMIUM).exists():  # noqa: ASYNC240
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    server = await aiohttp_server(create_app(settings_for(db_url)))
    async with async_playwright() as p:
        rules = "--host-resolver-rules=MAP rebound.test 127.0.0.1"
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, rules])
        try:
            page = await chromium.new_page()
            response = await page.goto(f"http://rebound.test:{server.port}/api/health")
            assert response is not None and response.status == 421
            read = await page.evaluate("() => fetch('/api/agents/status').then(r => r.status)")
            assert read == 421
            own = await page.goto(f"http://localhost:{server.port}/api/health")
            assert own is not None and own.status == 200
        finally:
            await chromium.close()


@pytest.mark.parametrize("token", [None, TOKEN], ids=["tokenless", "token"])
async def test_the_dashboards_own_buttons_still_work(
    token: str | None,
    db_url: str,
    browser: Any,
    assets_present: None,
    aiohttp_server: Any,
    settings_for: Any,
) -> None:
    env = {"BGAGENTS_TOKEN": token} if token else {}
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "insert into bg.agents (instance_id, name, host, pid, status, last_beat_at) "
            "values ('performance@h', 'performance', 'h', 1, 'running', now())"
        )
        alert_id = await conn.fetchval(
            "insert into bg.alerts (fingerprint, rule, labels, severity, summary, state, fired_at) "
            "values ('fp', 'agent_down', '{\"agent\": \"performance\"}', 'critical', "
            "'performance is down', 'firing', now()) returning id"
        )
        task_id = await conn.fetchval("select bg.enqueue('victim', '{}')")
        server = await aiohttp_server(create_app(settings_for(db_url, **env)))
        base = f"http://127.0.0.1:{server.port}"
        page = await browser.new_page()
        if token:
            await page.goto(f"{base}/")
            assert "/login" in page.url
            await page.locator('input[name="token"]').fill(token)
            await page.locator('button[type="submit"]').click()
            await page.wait_for_url(f"{base}/")

        async def value(query: str, *args: Any) -> Any:
            return await conn.fetchval(query, *args)

        await page.goto(f"{base}/")
        await page.locator('tr.agent[data-agent="performance"] button', has_text="Pause").click()
        await eventually(
            lambda: value("select desired = 'paused' from bg.agents where name = 'performance'"),
            timeout=15,
            what="the Pause button pauses the agent",
        )

        await page.goto(f"{base}/alerts?state=firing")
        card = page.locator(f'[data-alert="{alert_id}"]')
        await card.locator('input[name="comment"]').fill("on it")
        await card.locator('button[type="submit"]').click()
        await eventually(
            lambda: value("select acked_by is not null from bg.alerts where id = $1", alert_id),
            timeout=15,
            what="the Acknowledge button acks the alert",
        )

        await page.locator('form.silence input[name="matchers"]').fill("agent=performance")
        await page.locator('form.silence button[type="submit"]').click()
        await eventually(
            lambda: value('select count(*) from bg.silences where matchers = \'{"agent": "performance"}\''),
            timeout=15,
            what="the Silence form adds a silence",
        )

        await page.goto(f"{base}/tasks?queue=victim")
        await page.locator("button", has_text="Cancel all queued").click()
        await eventually(
            lambda: value("select status = 'cancelled' from bg.tasks where id = $1", task_id),
            timeout=15,
            what="the Cancel button cancels the task",
        )
        await page.close()
    finally:
        await conn.close()


VIOLATIONS = """
window.violations = [];
document.addEventListener('securitypolicyviolation',
  e => window.violations.push(e.effectiveDirective + ' ' + e.blockedURI));
"""


async def test_the_csp_blocks_injected_inline_script_and_the_pages_need_none(
    db_url: str, browser: Any, assets_present: None, aiohttp_server: Any, settings_for: Any
) -> None:
    server = await aiohttp_server(create_app(settings_for(db_url)))
    base = f"http://127.0.0.1:{server.port}"
    page = await browser.new_page()
    await page.add_init_script(VIOLATIONS)
    for path in ("/events", "/alerts", "/tasks", "/"):
        await page.goto(f"{base}{path}")
        await page.wait_for_function("() => window.htmx && document.body.hasAttribute('sse-connect')")
        assert await page.evaluate("() => window.violations") == [], path  # htmx, sse, css: all allowed
    config = await page.evaluate("() => [htmx.config.allowEval, htmx.config.allowScriptTags]")
    assert config == [False, False]
    await page.evaluate(
        """() => {
        document.body.insertAdjacentHTML('beforeend', '<img src="x" onerror="window.pwned = 1">');
        const s = document.createElement('script');
        s.textContent = 'window.pwned2 = 1';
        document.body.appendChild(s);
        const d = document.createElement('div');
        d.setAttribute('style', 'color: red');
        document.body.appendChild(d);
    }"""
    )
    await page.wait_for_function("() => window.violations.length >= 3", timeout=10000)
    assert await page.evaluate("() => [window.pwned, window.pwned2]") == [None, None]
    seen = " ".join(await page.evaluate("() => window.violations"))
    assert "script-src" in seen and "style-src" in seen
    await page.close()
