"""The dashboard's regions are named in one place: web/regions.py, the partial routes and templates agree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from web import regions
from web.app import create_app

PARTIALS = Path(regions.__file__).parent / "templates" / "partials"


def test_every_region_has_a_route_and_a_template_and_nothing_else_does(
    settings_for: Callable[..., Any],
) -> None:
    app = create_app(settings_for("postgresql://127.0.0.1:1/unused"))  # routes only: never started
    routes = {
        name.removeprefix("partial_") for name in app.router.named_resources() if name.startswith("partial_")
    }
    paths = {
        resource.canonical.removeprefix("/partials/")
        for resource in app.router.resources()
        if resource.canonical.startswith("/partials/")
    }
    templates = {p.stem for p in PARTIALS.glob("*.html")}
    assert len(set(regions.NAMES)) == len(regions.NAMES)
    assert set(regions.NAMES) == routes == paths == templates


def test_events_name_only_known_regions() -> None:
    for channel in ("agents", "alerts", "reports", "anything-else"):
        changed = regions.regions_of(channel)
        assert regions.EVENTS in changed
        assert set(changed) <= set(regions.NAMES)
    assert regions.TASKS in regions.NAMES
    assert all(set(names) <= set(regions.NAMES) for names in regions.BY_CHANNEL.values())
