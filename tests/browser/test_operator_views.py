"""What an operator looks at, in a real browser: the tasks chart, sparkline gaps, a phone-width
overview without horizontal scrolling, and paging through the events and tasks lists."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from web.app import create_app


async def _finish(conn: asyncpg.Connection, queue: str, done: int, failed: int) -> None:
    """``done`` tasks of ``queue`` completed and ``failed`` ones failed for good, just now."""
    for i in range(done + failed):
        await conn.execute("select bg.enqueue($1, $2::jsonb, max_attempts => 1)", queue, json.dumps({"i": i}))
    ids = [r["id"] for r in await conn.fetch("select id from bg.claim_tasks($1, $2, 'w-b', 30)", queue, 100)]
    assert len(ids) == done + failed
    await conn.execute("select bg.complete_tasks($1, $2, 'w-b')", ids[:done], ["1"] * done)
    for task_id in ids[done:]:
        await conn.execute("select bg.fail_task($1, 'w-b', 'boom', null, 0)", task_id)


async def test_the_tasks_chart_draws_finished_and_failed_bars_per_queue(
    db_url: str, browser: Any, assets_present: None, aiohttp_server: Any, settings_for: Any
) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await _finish(conn, "mail", done=6, failed=2)
        await _finish(conn, "thumbs", done=3, failed=0)
        server = await aiohttp_server(create_app(settings_for(db_url)))
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{server.port}/tasks")
        mail = page.locator('figure[data-queue="mail"]')
        await mail.wait_for()
        done = mail.locator("rect.bar-done")
        failed = mail.locator("rect.bar-failed")
        assert await done.count() == 1 and await failed.count() == 1
        assert (
            await done.get_attribute("data-count") == "6" and await failed.get_attribute("data-count") == "2"
        )
        done_box, failed_box = await done.bounding_box(), await failed.bounding_box()
        assert done_box and failed_box and done_box["height"] > 2 * failed_box["height"] > 0
        assert done_box["x"] < failed_box["x"]  # side by side in the same minute
        colours = {await r.evaluate("e => getComputedStyle(e).fill") for r in (done, failed)}
        assert len(colours) == 2  # green for done, red for failed
        thumbs = page.locator('figure[data-queue="thumbs"]')
        assert await thumbs.locator("rect.bar-done").count() == 1
        assert await thumbs.locator("rect.bar-failed").count() == 0
        await page.close()
    finally:
        await conn.close()


async def test_a_sparkline_with_missing_samples_is_drawn_as_separate_segments(
    db_url: str, browser: Any, assets_present: None, aiohttp_server: Any, settings_for: Any
) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        # Every 10 s for a minute, nothing for four minutes, then every 10 s again.
        ages = [*range(600, 540, -10), *range(300, 0, -10)]
        await conn.executemany(
            "insert into bg.performance_metrics (ts, host, source, metric, value) "
            "values (now() - make_interval(secs => $1), 'gap-host', 'host', 'host.cpu_percent', $2)",
            [(float(age), float(age % 70)) for age in ages],
        )
        server = await aiohttp_server(create_app(settings_for(db_url)))
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{server.port}/")
        chart = page.locator('figure[data-metric="host.cpu_percent"][data-host="gap-host"]')
        await chart.wait_for()
        segments = chart.locator("polyline")
        assert await segments.count() == 2
        first, second = [await segments.nth(i).evaluate("e => e.points.numberOfItems") for i in range(2)]
        assert (first, second) == (6, 30)
        first_end = await segments.nth(0).evaluate("e => e.points.getItem(e.points.numberOfItems - 1).x")
        second_start = await segments.nth(1).evaluate("e => e.points.getItem(0).x")
        assert second_start - first_end > 50  # the gap is left blank, not bridged
        assert "host=gap-host" in await chart.inner_text()
        await page.close()
    finally:
        await conn.close()


async def test_the_overview_fits_a_phone_screen_without_horizontal_scrolling(
    db_url: str, browser: Any, assets_present: None, aiohttp_server: Any, settings_for: Any
) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        for n in range(3):  # long names and a running agent: the widest rows the table gets
            host = f"a-rather-long-host-name-{n}.eu-west.example.internal"
            instance = f"summarizer-{n}@{host}:{4000 + n}"
            await conn.execute(
                "insert into bg.agents (instance_id, name, kind, host, pid, status, health, last_beat_at) "
                "values ($1, $2, 'custom', $3, $4, 'running', 'up', now())",
                instance,
                f"summarizer-{n}",
                host,
                4000 + n,
            )
            await conn.execute(
                "insert into bg.performance_metrics (host, source, metric, value) "
                "values ($1, 'host', 'host.cpu_percent', 12.5)",
                host,
            )
        await conn.execute(
            "insert into bg.alerts (fingerprint, rule, labels, severity, summary, state, fired_at) "
            "values ('fp-w', 'threshold', $1, 'critical', $2, 'firing', now())",
            json.dumps({"metric": "host.disk_percent", "host": "a-rather-long-host-name-0.eu-west.example"}),
            "disk almost full on a-rather-long-host-name-0.eu-west.example.internal " * 3,
        )
        server = await aiohttp_server(create_app(settings_for(db_url)))
        page = await browser.new_page(viewport={"width": 390, "height": 844})
        await page.goto(f"http://127.0.0.1:{server.port}/")
        await page.locator('tr.agent[data-agent="summarizer-2"]').wait_for()
        await page.locator(".host-charts").first.wait_for()
        widths = await page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert widths[0] <= widths[1] == 390, widths
        await page.close()
    finally:
        await conn.close()


async def test_older_and_newest_links_page_through_events_and_tasks(
    db_url: str, browser: Any, assets_present: None, aiohttp_server: Any, settings_for: Any
) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        events = [
            await conn.fetchval("select bg.publish('paged', $1::jsonb)", json.dumps({"n": n}))
            for n in range(60)
        ]
        tasks = [
            await conn.fetchval("select bg.enqueue('paged', $1::jsonb)", json.dumps({"n": n}))
            for n in range(120)
        ]
        server = await aiohttp_server(create_app(settings_for(db_url)))
        page = await browser.new_page()
        base = f"http://127.0.0.1:{server.port}"

        await page.goto(f"{base}/events?channel=paged")
        await page.locator(f'tr[data-event-id="{events[-1]}"]').wait_for()
        assert await page.locator("tr.event").count() == 50
        await page.locator("a.older").click()
        await page.locator(f'tr[data-event-id="{events[0]}"]').wait_for()
        assert await page.locator("tr.event").count() == 10
        assert await page.locator(f'tr[data-event-id="{events[9]}"]').count() == 1
        assert await page.locator(f'tr[data-event-id="{events[10]}"]').count() == 0  # on the first page
        assert await page.locator("a.older").count() == 0  # the last page
        await page.locator("a.newest").click()
        await page.locator(f'tr[data-event-id="{events[-1]}"]').wait_for()

        await page.goto(f"{base}/tasks?queue=paged")
        await page.locator(f'a[href="/tasks/{tasks[-1]}"]').wait_for()
        await page.locator("a.older").click()
        await page.locator(f'a[href="/tasks/{tasks[0]}"]').wait_for()
        assert await page.locator(f'a[href="/tasks/{tasks[19]}"]').count() == 1
        assert await page.locator(f'a[href="/tasks/{tasks[20]}"]').count() == 0
        assert "before=" in page.url and "queue=paged" in page.url
        await page.close()
    finally:
        await conn.close()
