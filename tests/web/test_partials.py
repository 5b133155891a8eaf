"""Every dashboard region's partial, requested directly: it shows what the database holds.

Each region of ``web.regions.NAMES`` has a check in :data:`SHOWS` that puts known
data in the database through the bus functions, then GETs ``/partials/<region>``
and looks for that data in the HTML; regions with an empty state have a check in
:data:`EMPTY` too. A region added without a check fails here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from bus import agents as instances
from bus import alerts, metrics, reports
from bus.client import Bus
from bus.metrics import Sample
from web import regions
from web.keys import BUS

Check = Callable[[TestClient, Bus], Awaitable[None]]
SHOWS: dict[str, Check] = {}
EMPTY: dict[str, Check] = {}

AGENT, HOST, PID = "greeter", "h-partials", 4242
INSTANCE = f"{AGENT}@{HOST}:{PID}"


def shows(region: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        SHOWS[region] = check
        return check

    return register


def empty(region: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        EMPTY[region] = check
        return check

    return register


async def partial(client: TestClient, region: str, query: str = "") -> str:
    """The HTML of ``/partials/<region>``, after checking that it is a 200 HTML fragment."""
    resp = await client.get(f"/partials/{region}{query}")
    body = await resp.text()
    assert resp.status == 200, body
    assert resp.content_type == "text/html"
    assert "<html" not in body.lower()  # a fragment to swap in, not a page
    return body


async def beating_agent(bus: Bus) -> None:
    """Agent ``greeter`` registered, running and with two heartbeats (seq 1 and 2)."""
    await instances.register(bus.pool, INSTANCE, AGENT, "custom", HOST, PID, "1.0", 1.0)
    await instances.set_status(bus.pool, INSTANCE, "running")
    assert await instances.beat(bus.pool, INSTANCE, 1, 12.5, 1_000_000) == "running"
    assert await instances.beat(bus.pool, INSTANCE, 2, 13.5, 1_000_000) == "running"


async def firing_alert(bus: Bus, summary: str = "disk almost full on h-partials") -> int:
    opened = await alerts.open_alert(
        bus.pool, "fp-disk", "threshold", {"metric": "host.disk_percent"}, "critical", summary, 97.0
    )
    assert await alerts.fire(bus.pool, opened["id"]) is not None
    return int(opened["id"])


# --- health -------------------------------------------------------------------------------


@shows("health")
async def _health(client: TestClient, bus: Bus) -> None:
    await beating_agent(bus)
    html = await partial(client, "health")
    assert "All systems healthy" in html and "1 up" in html and "0 firing" in html
    await firing_alert(bus)
    html = await partial(client, "health")
    assert "Attention needed" in html and "1 up" in html and "1 firing" in html


@empty("health")
async def _health_empty(client: TestClient, bus: Bus) -> None:
    html = await partial(client, "health")
    assert "All systems healthy" in html
    assert "0 up · 0 late · 0 down · 0 paused · 0 firing" in html


# --- agents -------------------------------------------------------------------------------


@shows("agents")
async def _agents(client: TestClient, bus: Bus) -> None:
    await beating_agent(bus)
    html = await partial(client, "agents")
    assert f'data-agent="{AGENT}"' in html and f">{AGENT}</a>" in html
    assert "status-running" in html and "health-up" in html
    assert f"<td>{PID}</td>" in html and f"<td>{HOST}</td>" in html
    assert "Pause</button>" in html  # a running agent can be paused from here
    await instances.set_status(bus.pool, INSTANCE, "stopped")
    assert f'data-agent="{AGENT}"' not in await partial(client, "agents")  # stopped: hidden...
    assert f'data-agent="{AGENT}"' in await partial(client, "agents", "?all=1")  # ...unless asked


@empty("agents")
async def _agents_empty(client: TestClient, bus: Bus) -> None:
    assert "No agents yet" in await partial(client, "agents")


# --- alerts -------------------------------------------------------------------------------


@shows("alerts")
async def _alerts(client: TestClient, bus: Bus) -> None:
    alert_id = await firing_alert(bus)
    await alerts.open_alert(
        bus.pool, "fp-pending", "anomaly", {"metric": "host.load1"}, "warning", "load odd"
    )
    html = await partial(client, "alerts")
    assert f'data-alert="{alert_id}"' in html
    assert "disk almost full on h-partials" in html and "metric=host.disk_percent" in html
    assert "sev-critical" in html and "firing" in html
    assert f'action="/api/alerts/{alert_id}/ack"' in html  # not acked yet: the ack form
    assert "load odd" not in html  # the partial shows firing alerts unless asked for all
    assert "load odd" in await partial(client, "alerts", "?all=1")
    assert "load odd" in await partial(client, "alerts", "?state=pending")


@empty("alerts")
async def _alerts_empty(client: TestClient, bus: Bus) -> None:
    assert "No firing alerts." in await partial(client, "alerts")


# --- charts -------------------------------------------------------------------------------


@shows("charts")
async def _charts(client: TestClient, bus: Bus) -> None:
    await metrics.insert(
        bus.pool,
        HOST,
        [Sample("host", None, "host.cpu_percent", 40.0), Sample("host", None, "queue.depth", 7.0)],
    )
    await metrics.insert(bus.pool, HOST, [Sample("host", None, "host.cpu_percent", 42.5)])
    html = await partial(client, "charts")
    assert "CPU <strong>42.5%</strong>" in html  # the newest sample
    assert "Queue depth <strong>7.0 tasks</strong>" in html
    assert "Memory <strong>no data</strong>" in html
    assert 'points=""' in html  # the memory chart, and only it, has no line
    assert html.count("<polyline") == 3 and html.count('points=""') == 1


@empty("charts")
async def _charts_empty(client: TestClient, bus: Bus) -> None:
    html = await partial(client, "charts")
    assert html.count("<strong>no data</strong>") == 3


# --- tasks --------------------------------------------------------------------------------


@shows("tasks")
async def _tasks(client: TestClient, bus: Bus) -> None:
    mail = await bus.queue.enqueue("mail", {"to": "ada"})
    other = await bus.queue.enqueue("reports", {})
    html = await partial(client, "tasks")
    assert f'href="/tasks/{mail}">{mail}</a>' in html and f'href="/tasks/{other}">{other}</a>' in html
    assert 'href="/tasks?queue=mail"' in html and "task-queued" in html
    filtered = await partial(client, "tasks", "?queue=mail")
    assert f'href="/tasks/{mail}"' in filtered and f'href="/tasks/{other}"' not in filtered
    assert "Retry all failed in mail" in filtered


@empty("tasks")
async def _tasks_empty(client: TestClient, bus: Bus) -> None:
    assert "No tasks." in await partial(client, "tasks")


# --- events -------------------------------------------------------------------------------


@shows("events")
async def _events(client: TestClient, bus: Bus) -> None:
    event_id = await bus.publish("deploys", {"version": "1.2.3"})
    await bus.publish("other", {})
    html = await partial(client, "events")
    assert f'data-event-id="{event_id}"' in html
    assert '<a href="/events?channel=deploys">deploys</a>' in html
    assert "&#34;version&#34;: &#34;1.2.3&#34;" in html  # the payload's JSON, as text
    filtered = await partial(client, "events", "?channel=deploys")
    assert "deploys" in filtered and "?channel=other" not in filtered


@empty("events")
async def _events_empty(client: TestClient, bus: Bus) -> None:
    assert "No events yet." in await partial(client, "events")


# --- heartbeats ---------------------------------------------------------------------------


@shows("heartbeats")
async def _heartbeats(client: TestClient, bus: Bus) -> None:
    await beating_agent(bus)
    html = await partial(client, "heartbeats", f"?name={AGENT}")
    assert f"<td>{INSTANCE}</td>" in html and f"<td>{PID}</td>" in html
    assert "seq 1 · running" in html and "seq 2 · running" in html
    assert html.count('class="beat beat-running"') == 2


@empty("heartbeats")
async def _heartbeats_empty(client: TestClient, bus: Bus) -> None:
    await beating_agent(bus)  # another agent's beats do not show
    html = await partial(client, "heartbeats", "?name=nobody")
    assert INSTANCE not in html and "seq " not in html
    assert "Heartbeat timeline" in html


# --- report -------------------------------------------------------------------------------


@shows("report")
async def _report(client: TestClient, bus: Bus) -> None:
    await reports.store(bus.pool, 3600, "Quiet hour: <nothing> failed.", {"alerts": 0})
    await reports.store(bus.pool, 7200, "The newest report.", {})
    html = await partial(client, "report")
    assert "The newest report." in html and "for the last 2 hour(s)" in html
    assert "Quiet hour" not in html  # only the latest


@empty("report")
async def _report_empty(client: TestClient, bus: Bus) -> None:
    assert "No report yet" in await partial(client, "report")


# --- the tests ----------------------------------------------------------------------------


def test_every_region_has_a_check() -> None:
    assert set(SHOWS) == set(regions.NAMES)
    assert set(EMPTY) <= set(regions.NAMES)


@pytest.mark.parametrize("region", regions.NAMES)
async def test_partial_shows_what_the_database_holds(client: TestClient, region: str) -> None:
    assert region in SHOWS, f"no test requests /partials/{region}: add one to SHOWS"
    await SHOWS[region](client, client.app[BUS])


@pytest.mark.parametrize("region", regions.NAMES)
async def test_partial_with_nothing_to_show(client: TestClient, region: str) -> None:
    if region not in EMPTY:
        pytest.skip(f"/partials/{region} has no empty state")
    await EMPTY[region](client, client.app[BUS])
