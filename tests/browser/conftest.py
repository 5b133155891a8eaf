"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright's async API.

Without chromium these tests skip with a reason, except under CI=true, where
they must run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not shutil.which("chromium") and not Path(CHROMIUM).exists():  # noqa: ASYNC240
        _skip_or_fail("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _skip_or_fail("playwright is not installed (pip install -e '.[test]')")
    async with async_playwright() as p:
        instance = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield instance
        await instance.close()


@pytest.fixture
def assets_present() -> None:
    from web.pages import ASSETS

    if not (ASSETS / "htmx.org").exists():
        _skip_or_fail("the dashboard's npm assets are missing (npm ci --prefix web)")
