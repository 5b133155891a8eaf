"""The dashboard's live regions: their names, and which ones an event on a channel changes.

Each name is a partial, ``templates/partials/<name>.html``, served at
``GET /partials/<name>`` (a test keeps the three in step). The dashboard's
coalesced SSE stream sends these names as event names, and each region
re-fetches its partial on ``hx-trigger="sse:<name>"``.
"""

from __future__ import annotations

NAMES: tuple[str, ...] = ("health", "agents", "alerts", "charts", "tasks", "events", "heartbeats", "report")
"""Every live region, in the order the dashboard shows them."""

EVENTS = "events"
"""The region listing the event log: every event changes it."""

TASKS = "tasks"
"""The queue's region: changed by ``bg_tasks`` notifications and by the queue counts, not by events."""

BY_CHANNEL: dict[str, tuple[str, ...]] = {
    "agents": ("agents", "health"),
    "alerts": ("alerts", "health"),
    "reports": ("report",),
}
"""The regions, besides :data:`EVENTS`, that an event on a channel changes."""


def regions_of(channel: str) -> tuple[str, ...]:
    """Dashboard regions an event on ``channel`` changes."""
    return (*BY_CHANNEL.get(channel, ()), EVENTS)
