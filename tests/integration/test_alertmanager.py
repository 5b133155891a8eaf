"""Alerts pushed to Debian's real Alertmanager, checked with its own ``amtool``.

A killed agent's ``agent_down`` (fired by the real heartbeat agent process)
shows up in ``amtool alert query`` with our labels and annotations, and is gone
from it soon after a restart resolves it: far sooner than the ``endsAt`` that
the re-sends give it, so it was our resolve that ended it. Driving the heartbeat
agent's AlertBook directly: a delivery to an Alertmanager that is not up yet is
logged and retried, a firing alert is re-sent, and a redirect is never followed.
Every Alertmanager runs on 127.0.0.1 from a temporary directory, with clustering
off. Skips when the binaries are missing (fails under CI=true).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from aiohttp import web

from agents.builtin.alerting import AlertBook, AlertmanagerPush, Condition
from bus.client import Bus
from bus.config import Settings
from tests.integration.test_agents import (
    ALERT_BUDGET,
    MONITORING,
    POLL_SLACK,
    STARTUP,
    Fleet,
    agent_down_alerts,
    free_port,
    kill9,
    running_up,
)
from tests.waiting import eventually, wait_until

pytestmark = pytest.mark.timeout(120)

RESEND = 30.0  # the agent process's re-send interval: each push is valid for 4 × 30 s


def debian_binary(name: str, package: str) -> str:
    """The path of a Debian binary, or a skip naming its package (a failure under CI=true)."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (apt-get install -y {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


class Alertmanager:
    """One ``prometheus-alertmanager`` on 127.0.0.1 with a receiver that drops everything."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.binary = debian_binary("prometheus-alertmanager", "prometheus-alertmanager")
        self.amtool = debian_binary("amtool", "prometheus-alertmanager")
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        config = {
            "route": {"receiver": "blackhole", "group_wait": "1s", "group_interval": "1s"},
            "receivers": [{"name": "blackhole"}],
        }
        (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))

    def start(self) -> None:
        log = (self.workdir / "alertmanager.log").open("ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.workdir / 'alertmanager.yml'}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # no gossip port on every interface
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(self._ready, timeout=20, what="alertmanager ready", interval=0.1, detail=self.log)

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def log(self) -> str:
        path = self.workdir / "alertmanager.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def query(self, *matchers: str) -> list[dict[str, Any]]:
        """``amtool alert query``: the active alerts matching ``matchers``."""
        result = subprocess.run(
            [self.amtool, "alert", "query", f"--alertmanager.url={self.url}", "-o", "json", *matchers],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert result.returncode == 0, result.stderr
        found: list[dict[str, Any]] = json.loads(result.stdout or "[]")
        return found


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    workdir = tmp_path / "alertmanager"
    workdir.mkdir()
    am = Alertmanager(workdir, free_port())
    try:
        yield am
    finally:
        am.stop()


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the real heartbeat agent -------------------------------------------------------------


async def test_a_killed_agent_shows_up_in_amtool_and_resolves_there_after_a_restart(
    conn: asyncpg.Connection, cli_env: dict[str, str], db_url: str, tmp_path: Path, alertmanager: Alertmanager
) -> None:
    alertmanager.start()
    monitoring = {
        **MONITORING,
        "heartbeat": {
            **MONITORING["heartbeat"],
            "alertmanager_url": alertmanager.url,
            "alertmanager_resend": RESEND,
        },
    }
    path = tmp_path / "monitoring.yml"
    path.write_text(yaml.safe_dump(monitoring))
    env = {**cli_env, "DATABASE_URL": db_url, "BGAGENTS_MONITORING_FILE": str(path), "BGAGENTS_POOL_MIN": "1"}
    logs = tmp_path / "logs"
    logs.mkdir()
    fleet = Fleet(env, logs)
    try:
        procs = {name: fleet.start("run", name) for name in ("heartbeat", "performance")}
        rows = {
            name: await fleet.wait(running_up(conn, proc), STARTUP, f"{name} running and up")
            for name, proc in procs.items()
        }
        host = rows["performance"]["host"]
        assert alertmanager.query() == []
        kill9(procs["performance"])

        async def in_alertmanager() -> list[dict[str, Any]] | None:
            return alertmanager.query("alertname=agent_down", "agent=performance") or None

        [shown] = await fleet.wait(
            in_alertmanager, ALERT_BUDGET + POLL_SLACK + 10, "agent_down in amtool alert query"
        )
        [alert] = [a for a in await agent_down_alerts(conn, "performance") if a["state"] == "firing"]
        assert shown["labels"] == {
            "alertname": "agent_down",
            "severity": "critical",
            "agent": "performance",
            "host": host,
        }
        assert shown["annotations"]["summary"] == alert["summary"]
        assert f"bgagents alert {alert['id']}" in shown["annotations"]["description"]
        assert shown["status"]["state"] == "active"
        assert abs((parse_time(shown["startsAt"]) - alert["fired_at"]).total_seconds()) < 0.01
        valid_for = (parse_time(shown["endsAt"]) - parse_time(shown["updatedAt"])).total_seconds()
        assert 3 * RESEND < valid_for <= 4 * RESEND + 1

        fleet.start("run", "performance")

        async def gone() -> bool:
            return alertmanager.query("alertname=agent_down") == []

        began = time.monotonic()
        await fleet.wait(gone, STARTUP + 10, "agent_down gone from amtool alert query after the restart")
        assert time.monotonic() - began < 3 * RESEND  # our resolve ended it, not its endsAt
        row = await conn.fetchrow("select state from bg.alerts where id = $1", alert["id"])
        assert row is not None and row["state"] == "resolved"
        assert procs["heartbeat"].poll() is None
    finally:
        fleet.stop_all()


# --- the heartbeat agent's AlertBook, driven directly ----------------------------------------


@pytest.fixture
async def bus(db_url: str, settings_for: Callable[..., Settings]) -> Any:
    opened = await Bus.open(settings_for(db_url), listen=False)
    yield opened
    await opened.close()


async def test_a_delivery_to_an_alertmanager_not_up_yet_is_logged_and_retried_then_re_sent(
    bus: Bus, alertmanager: Alertmanager, caplog: pytest.LogCaptureFixture
) -> None:
    pusher = AlertmanagerPush(alertmanager.url, resend=1.0, source="heartbeat", attempts=1)
    book = AlertBook(bus, ("queue_backlog",), source="heartbeat", alertmanager=pusher)
    holding = [Condition("queue_backlog", {"queue": "mail"}, "warning", "queue mail is behind", 0.0, 42.0)]

    async def evaluate_until_firing() -> bool:
        await book.evaluate(holding)
        row = await bus.pool.fetchrow("select state from bg.alerts where rule = 'queue_backlog'")
        return row is not None and row["state"] == "firing"

    with caplog.at_level(logging.WARNING, logger="agents.builtin.alerting"):
        await eventually(evaluate_until_firing, timeout=10, what="queue_backlog firing")
        await pusher.wait()  # the first push: nothing listens on the port yet
    assert any("Alertmanager" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)

    alertmanager.start()

    async def shown() -> dict[str, Any] | None:
        await book.evaluate(holding)  # each evaluation pushes what is due, the failed one included
        await pusher.wait()
        found = alertmanager.query("alertname=queue_backlog")
        return found[0] if found else None

    first = await eventually(shown, timeout=20, what="queue_backlog in amtool after a retry", interval=0.2)
    assert first["labels"] == {
        "alertname": "queue_backlog",
        "severity": "warning",
        "queue": "mail",
        "agent": "heartbeat",
        "host": pusher.host,
    }
    assert "value 42" in first["annotations"]["description"]

    async def re_sent() -> dict[str, Any] | None:
        alert = await shown()
        return alert if alert is not None and alert["updatedAt"] != first["updatedAt"] else None

    later = await eventually(re_sent, timeout=10, what="the firing alert re-sent", interval=0.2)
    assert parse_time(later["endsAt"]) > parse_time(first["endsAt"])
    assert later["startsAt"] == first["startsAt"]


async def test_an_alertmanager_url_that_redirects_is_not_followed(
    bus: Bus, aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    hits: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPFound("/elsewhere/api/v2/alerts")

    async def elsewhere(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/api/v2/alerts", redirect)
    app.router.add_post("/elsewhere/api/v2/alerts", elsewhere)
    server = await aiohttp_server(app)
    pusher = AlertmanagerPush(str(server.make_url("/")), resend=60.0, attempts=1)
    book = AlertBook(bus, ("queue_backlog",), alertmanager=pusher)
    holding = [Condition("queue_backlog", {"queue": "q"}, "warning", "behind", 0.0)]

    async def pushed() -> bool:
        await book.evaluate(holding)
        await pusher.wait()
        return bool(hits)

    with caplog.at_level(logging.ERROR, logger="agents.builtin.alerting"):
        await eventually(pushed, timeout=10, what="a push to the redirecting URL")
    assert hits == ["/api/v2/alerts"]
    assert any("not followed" in r.getMessage() for r in caplog.records)
