"""Retention and rescue: old rows go, recent ones stay, dead last-attempt leases fail."""

from __future__ import annotations

from bus import db, maintenance


async def test_retention_prunes_only_old_rows_and_rescues_dead_leases(db_url: str, settings_for) -> None:
    settings = settings_for(db_url, BGAGENTS_EVENT_RETENTION_DAYS="1", BGAGENTS_TASK_RETENTION_DAYS="2")
    conn = await db.connect(settings)
    try:
        await conn.execute("select bg.publish('old', '{}'), bg.publish('new', '{}')")
        await conn.execute(
            "update bg.events set created_at = now() - interval '25 hours' where channel = 'old'"
        )
        old, new, dead = [await conn.fetchval("select bg.enqueue('m', '{}')") for _ in range(3)]
        await conn.execute(
            "update bg.tasks set status = 'done', finished_at = now() - interval '3 days' where id = $1", old
        )
        await conn.execute(
            "update bg.tasks set status = 'done', finished_at = now() - interval '1 day' where id = $1", new
        )
        await conn.execute(
            """update bg.tasks set status = 'running', attempts = max_attempts, locked_by = 'gone',
               lease_until = now() - interval '1 minute' where id = $1""",
            dead,
        )

        report = await maintenance.run_once(conn, settings)

        assert (report.events_pruned, report.tasks_pruned, report.tasks_rescued) == (1, 1, 1)
        assert await conn.fetchval("select array_agg(channel) from bg.events") == ["new"]
        assert await conn.fetchval("select count(*) from bg.tasks where id = $1", old) == 0
        row = await conn.fetchrow("select status, last_error from bg.tasks where id = $1", dead)
        assert row["status"] == "failed" and "lease expired" in row["last_error"]
        again = await maintenance.run_once(conn, settings)
        assert (again.events_pruned, again.tasks_pruned, again.tasks_rescued) == (0, 0, 0)
    finally:
        await conn.close()
