"""Prometheus: the database-kept counters, the example rules under promtool, and a real scrape.

The counters (tasks finished, events published, claim latency) are kept by the
triggers of migration 0011, so they are checked through the queue's own SQL
functions, across pruning. ``promtool`` checks and unit-tests
docs/prometheus/rules.yml, and Debian's ``prometheus`` scrapes a real
``bgagents web`` subprocess and answers for our series through its query API.
The last two skip when the Debian binaries are missing (fail under CI=true).
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from bus import counters

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "prometheus"

pytestmark = pytest.mark.timeout(90)


def debian_binary(name: str, package: str) -> str:
    """The path of a Debian binary, or a skip naming its package (a failure under CI=true)."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (apt-get install -y {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


# --- the counters -------------------------------------------------------------------------


async def claim(conn: asyncpg.Connection, queue: str, n: int) -> list[int]:
    rows = await conn.fetch("select id from bg.claim_tasks($1, $2, 'w1', 30)", queue, n)
    return [r["id"] for r in rows]


async def test_counters_count_finishes_events_and_claim_latency_and_survive_pruning(
    conn: asyncpg.Connection,
) -> None:
    before = await counters.read(conn)
    assert before.tasks_finished == {} and before.claim_latency == ()
    for i in range(5):
        await conn.execute("select bg.enqueue('mail', $1::jsonb)", json.dumps({"i": i}))
    # One task was ready two minutes ago: its claim waited about 120 s.
    await conn.execute(
        "update bg.tasks set run_at = now() - interval '120 s', created_at = now() - interval '130 s' "
        "where id = (select min(id) from bg.tasks)"
    )
    ids = await claim(conn, "mail", 5)
    assert len(ids) == 5
    await conn.execute("select bg.complete_tasks($1, $2, 'w1')", ids[:3], ["1", "2", "3"])
    await conn.execute("select bg.fail_task($1, 'w1', 'boom', null, 0)", ids[3])  # retried: not finished
    await conn.execute("update bg.tasks set max_attempts = 1 where id = $1", ids[4])
    await conn.execute("select bg.fail_task($1, 'w1', 'boom', null, 0)", ids[4])  # failed for good
    await conn.execute("select bg.publish('orders', '{}')")
    await conn.execute("select bg.publish('orders', '{}')")
    await conn.execute("select bg.publish('audit', '{}')")

    kept = await counters.read(conn)
    assert kept.tasks_finished == {("mail", "done"): 3.0, ("mail", "failed"): 1.0}
    assert kept.events_published["orders"] == 2.0 and kept.events_published["audit"] == 1.0
    (latency,) = kept.claim_latency
    assert latency.queue == "mail" and latency.count == 5.0
    bounds = [b for b, _ in latency.buckets]
    assert bounds == sorted(bounds) and bounds[-1] == float("inf")
    assert dict(latency.buckets)[60.0] == 4.0 and dict(latency.buckets)[300.0] == 5.0  # cumulative
    assert 119.0 < latency.total < 125.0

    # The retried task is claimed again: a second observation, small.
    assert await claim(conn, "mail", 5) == [ids[3]]
    await conn.execute("select bg.complete_tasks($1, $2, 'w1')", [ids[3]], ["4"])
    # Pruning every finished task and event leaves the counters as they were.
    await conn.execute("update bg.tasks set finished_at = now() - interval '30 days'")
    assert await conn.fetchval("select bg.prune_tasks($1)", timedelta(days=1)) == 5
    await conn.execute("delete from bg.events")
    after = await counters.read(conn)
    assert after.tasks_finished == {("mail", "done"): 4.0, ("mail", "failed"): 1.0}
    assert after.events_published["orders"] == 2.0
    assert after.claim_latency[0].count == 6.0
