"""The dashboard in a real browser: live agents, acknowledging, the events tail."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import asyncpg

from tests.conftest import BGAGENTS
from web.app import create_app

ROOT = Path(__file__).resolve().parents[2]
FAST = """
heartbeat: {interval: 0.5, grace: 1, misses: 2, alert_for: 1, heartbeat_interval: 0.5}
performance: {interval: 1, heartbeat_interval: 0.5}
"""


def _agent(name: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*BGAGENTS, "run", name],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


async def test_overview_shows_agents_and_a_killed_agent_turns_red_without_reload(
    db_url: str,
    browser: Any,
    assets_present: None,
    aiohttp_server: Any,
    settings_for: Any,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    monitoring = tmp_path / "monitoring.yml"
    monitoring.write_text(FAST)
    env = {**cli_env, "DATABASE_URL": db_url, "BGAGENTS_MONITORING_FILE": str(monitoring)}
    watcher, victim = _agent("heartbeat", env), _agent("performance", env)
    try:
        server = await aiohttp_server(create_app(settings_for(db_url)))
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{server.port}/")
        row = page.locator('tr.agent[data-agent="performance"]')
        await row.wait_for(timeout=20000)  # appears live as the agent registers
        await page.locator('tr.agent[data-agent="performance"][data-health="up"]').wait_for(timeout=20000)
        await page.screenshot(path=str(tmp_path / "overview.png"))
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        await page.locator('tr.agent[data-agent="performance"][data-health="down"]').wait_for(timeout=20000)
        colour = await page.locator('tr.agent[data-agent="performance"] .health-down').evaluate(
            "e => getComputedStyle(e).color"
        )
        assert colour in ("rgb(197, 48, 48)", "rgb(252, 129, 129)")  # the "bad" red, light or dark
        await page.close()
    finally:
        _stop(watcher)
        _stop(victim)


async def test_acknowledging_an_alert_in_the_page(
    db_url: str,
    browser: Any,
    assets_present: None,
    aiohttp_server: Any,
    settings_for: Any,
) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        alert_id = await conn.fetchval(
            "insert into bg.alerts (fingerprint, rule, labels, severity, summary, state, fired_at) "
            "values ('fp', 'agent_down', '{\"agent\": \"performance\"}', 'critical', "
            "'performance is down', 'firing', now()) returning id"
        )
        server = await aiohttp_server(create_app(settings_for(db_url)))
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{server.port}/alerts?state=firing")
        card = page.locator(f'[data-alert="{alert_id}"]')
        await card.locator('input[name="comment"]').fill("looking into it")
        await card.locator('button[type="submit"]').click()
        await page.locator(f'[data-alert="{alert_id}"] >> text=acked by').wait_for(timeout=15000)
        row = await conn.fetchrow("select acked_by, ack_comment from bg.alerts where id = $1", alert_id)
        assert row["ack_comment"] == "looking into it" and row["acked_by"]
        await page.close()
    finally:
        await conn.close()


async def test_the_events_page_shows_a_psql_publish_live(
    db_url: str,
    browser: Any,
    assets_present: None,
    aiohttp_server: Any,
    settings_for: Any,
) -> None:
    server = await aiohttp_server(create_app(settings_for(db_url)))
    page = await browser.new_page()
    await page.goto(f"http://127.0.0.1:{server.port}/events")
    await page.locator("body[sse-connect]").wait_for()
    psql = await asyncpg.connect(db_url)
    try:
        event_id = await psql.fetchval("""select bg.publish('deploys', '{"version": "1.4.2"}')""")
    finally:
        await psql.close()
    await page.locator(f'tr.event[data-event-id="{event_id}"]').wait_for(timeout=15000)
    assert "1.4.2" in await page.locator(f'tr.event[data-event-id="{event_id}"]').inner_text()
    await page.close()
