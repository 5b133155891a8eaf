"""Prometheus: the database-kept counters, the example rules under promtool, and a real scrape.

The counters (tasks finished, events published, claim latency) are kept by the
queue's own SQL functions (migration 0015) and the events trigger of 0011, so
they are checked through those functions, across pruning, for every way a task
ends. ``promtool`` checks and unit-tests
docs/prometheus/rules.yml, and Debian's ``prometheus`` scrapes a real
``bgagents web`` subprocess and answers for our series through its query API.
The last two skip when the Debian binaries are missing (fail under CI=true).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from bus import counters
from tests.conftest import BGAGENTS
from tests.integration.test_agents import free_port
from tests.waiting import eventually, wait_until

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


async def test_every_way_a_task_ends_counts_once_and_a_reclaim_counts_its_wait(
    conn: asyncpg.Connection,
) -> None:
    ids = [await conn.fetchval("select bg.enqueue('jobs', '{}')") for _ in range(6)]
    assert await conn.fetchval("select bg.cancel_task($1)", ids[5]) == "cancelled"  # queued: at once
    assert await conn.fetchval("select bg.cancel_task($1)", ids[5]) == "cancelled"  # again: no count
    claimed = await claim(conn, "jobs", 5)
    assert sorted(claimed) == ids[:5]
    # running, asked to cancel: its completion ends it cancelled
    assert await conn.fetchval("select bg.cancel_task($1)", ids[0]) == "cancelling"
    await conn.execute("select bg.complete_tasks($1, $2, 'w1')", [ids[0], ids[1]], ["null", "null"])
    await conn.execute("select bg.complete_tasks($1, $2, 'w1')", [ids[1]], ["null"])  # twice: once
    await conn.execute("select bg.fail_task($1, 'w1', 'stop', null, 0, true)", ids[2])  # cancelled
    # two leases run out: one on its last attempt (rescued as failed), one re-claimed 60 s late
    await conn.execute(
        "update bg.tasks set lease_until = now() - interval '60 s', max_attempts = 1 where id = $1", ids[3]
    )
    await conn.execute("update bg.tasks set lease_until = now() - interval '60 s' where id = $1", ids[4])
    assert await conn.fetchval("select bg.rescue_expired()") == 1
    assert await conn.fetchval("select bg.rescue_expired()") == 0
    assert await claim(conn, "jobs", 5) == [ids[4]]

    kept = await counters.read(conn)
    assert kept.tasks_finished == {("jobs", "cancelled"): 3.0, ("jobs", "done"): 1.0, ("jobs", "failed"): 1.0}
    (latency,) = kept.claim_latency
    assert latency.count == 6.0  # five first claims and the re-claim
    assert dict(latency.buckets)[60.0] == 5.0 and dict(latency.buckets)[300.0] == 6.0
    assert 59.0 < latency.total < 65.0


# --- the example rules under promtool --------------------------------------------------------


def test_the_example_config_and_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = debian_binary("promtool", "prometheus")
    for args in (("check", "rules", "rules.yml"), ("test", "rules", "rules_test.yml")):
        result = subprocess.run([promtool, *args], cwd=DOCS, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout
    checked = subprocess.run(
        [promtool, "check", "config", "--syntax-only", "prometheus.yml"],
        cwd=DOCS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- a real Prometheus scraping a real `bgagents web` -------------------------------------


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


class Process:
    """A subprocess logging to a file, stopped with SIGTERM (SIGKILL if it lingers)."""

    def __init__(self, args: list[str], log: Path, **popen: Any) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, **popen)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            process.stop()


async def test_prometheus_scrapes_bgagents_web_and_finds_the_counters_across_a_web_restart(
    conn: asyncpg.Connection,
    cli_env: dict[str, str],
    db_url: str,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    prometheus = debian_binary("prometheus", "prometheus")
    web_port, prom_port = free_port(), free_port()
    env = {**cli_env, "DATABASE_URL": db_url, "BGAGENTS_HOST": "127.0.0.1", "BGAGENTS_PORT": str(web_port)}
    web_base, prom_base = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{prom_port}"

    def start_web() -> Process:
        web = Process([*BGAGENTS, "web"], tmp_path / "web.log", env=env, cwd=ROOT)
        processes.append(web)
        wait_until(
            lambda: answers(f"{web_base}/metrics"), timeout=30, what="bgagents web up", detail=web.output
        )
        return web

    web = start_web()
    for i in range(3):
        await conn.execute("select bg.enqueue('mail', $1::jsonb)", json.dumps({"i": i}))
    ids = [r["id"] for r in await conn.fetch("select id from bg.claim_tasks('mail', 3, 'w1', 30)")]
    await conn.execute("select bg.complete_tasks($1, $2, 'w1')", ids, ["1", "2", "3"])
    await conn.execute("select bg.publish('orders', '{}')")

    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DOCS / "rules.yml")],
        "scrape_configs": [
            {"job_name": "bgagents", "static_configs": [{"targets": [f"127.0.0.1:{web_port}"]}]}
        ],
    }
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom = Process(
        [
            prometheus,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        workdir / "prometheus.log",
        cwd=workdir,
    )
    processes.append(prom)
    wait_until(
        lambda: answers(f"{prom_base}/-/ready"), timeout=30, what="prometheus ready", detail=prom.output
    )

    def query(expr: str) -> list[dict[str, Any]]:
        body = get_json(f"{prom_base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value_of(expr: str, wanted: float) -> list[dict[str, Any]] | None:
        found = query(expr)
        return found if found and float(found[0]["value"][1]) == wanted else None

    def detail() -> str:
        return prom.output() + "\n" + web.output()

    async def finished(wanted: float) -> list[dict[str, Any]]:
        expr = 'bgagents_tasks_finished_total{job="bgagents", queue="mail", status="done"}'
        return await eventually(
            lambda: value_of(expr, wanted),
            timeout=30,
            what=f"{expr} == {wanted} in Prometheus",
            interval=0.3,
            detail=detail,
        )

    [series] = await finished(3.0)
    assert series["metric"]["instance"] == f"127.0.0.1:{web_port}"
    buckets = query('bgagents_task_claim_latency_seconds_bucket{queue="mail"}')
    assert {b["metric"]["le"] for b in buckets} >= {"0.005", "1.0", "+Inf"}
    assert float(next(b for b in buckets if b["metric"]["le"] == "+Inf")["value"][1]) == 3.0
    assert query('bgagents_task_claim_latency_seconds_count{queue="mail"}')
    assert query('bgagents_events_published_total{channel="orders"}')
    rules = get_json(f"{prom_base}/api/v1/rules")["data"]["groups"]
    assert {g["name"] for g in rules} == {"bgagents.recording", "bgagents.alerts"}
    assert all(r["health"] != "err" for g in rules for r in g["rules"]), rules

    # The web server restarts (a scrape fails meanwhile); the counter carries on, never reset.
    web.stop()
    web = start_web()
    await conn.execute("select bg.enqueue('mail', '{}')")
    more = [r["id"] for r in await conn.fetch("select id from bg.claim_tasks('mail', 3, 'w1', 30)")]
    await conn.execute("select bg.complete_tasks($1, $2, 'w1')", more, ["4"])
    await finished(4.0)
    resets = query('resets(bgagents_tasks_finished_total{queue="mail", status="done"}[5m])')
    assert [float(r["value"][1]) for r in resets] == [0.0]
