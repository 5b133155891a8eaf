"""System reports: grounded recommendations, stored and published."""

from __future__ import annotations

import asyncpg

from agents.builtin.ai_help import AIHelpAgent
from bus.client import Bus


async def test_a_report_names_what_is_wrong_and_what_to_do(db_url: str, settings_for) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "insert into bg.agents (instance_id, name, host, pid, status, health) "
            "values ('p@h1', 'performance', 'h1', 7, 'dead', 'down')"
        )
        await conn.execute(
            "insert into bg.performance_metrics (host, source, metric, value) "
            "select 'h1', 'host', 'host.cpu_percent', v from unnest(array[91.0, 95.0, 99.0]) v"
        )
        slow = await conn.fetchval("select bg.enqueue('mail', '{}')")
        await conn.execute("update bg.tasks set run_at = now() - interval '10 minutes' where id = $1", slow)
        failed = await conn.fetchval("select bg.enqueue('mail', '{}')")
        await conn.execute("update bg.tasks set status = 'failed', finished_at = now() where id = $1", failed)
    finally:
        await conn.close()
    async with Bus.connect(settings_for(db_url), listen=False) as bus:
        cursor = await bus.events.current_cursor()
        result = await AIHelpAgent(bus).report(3600)
        body = result["body"]
        assert "performance on h1 is down" in body
        assert "Restart performance on h1" in body
        assert "CPU averaged 95.0% (max 99.0%, 3 samples)" in body
        assert "Queue mail: 1 waiting, the oldest for 600 s" in body
        assert "1 task(s) failed for good" in body
        stored = await bus.pool.fetchval("select body from bg.reports where id = $1", result["id"])
        assert stored == body
        [event] = await bus.events.read_after(cursor, ["reports"])
        assert event.payload["id"] == result["id"]


async def test_a_quiet_system_gets_no_recommendations(db_url: str, settings_for) -> None:
    async with Bus.connect(settings_for(db_url), listen=False) as bus:
        body = (await AIHelpAgent(bus).report(3600))["body"]
    assert "all up" in body and "Recommendations: none" in body
