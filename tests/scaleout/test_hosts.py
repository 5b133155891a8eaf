"""Several hosts on one PostgreSQL: a host cut off and back, and one performance monitor per host.

Each host is a network namespace with its own address and hostname (see
:mod:`tests.scaleout.netns`); its processes reach PostgreSQL over TCP on the
bridge. Cutting a host sets its link down: its processes keep running but
reach nothing, as when a machine drops off the network.

No double execution inside a valid lease: the handler appends every start and
end (task, host, pid, wall-clock time) to a file per host, and a trigger in the
test's database logs every change of a task's holder and lease. A task may
start again only once every lease granted to its previous runner has passed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from tests.conftest import BGAGENTS, ROOT
from tests.handlers import RUNS_DIR_ENV
from tests.scaleout.netns import HostsFleet, Lab, require_netns

pytestmark = pytest.mark.timeout(240)

QUEUE = "hosts"
LEASE = 3.0  # the workers' --lease: renewed every LEASE / 3
TASK_SECONDS = 8.0
BEAT = 0.5
MONITORING: dict[str, dict[str, Any]] = {
    "coordinator": {"interval": 0.5, "lease": 3.0, "dead_after": 3.0, "heartbeat_interval": BEAT},
    "heartbeat": {"interval": 0.5, "grace": 1.0, "misses": 2, "alert_for": 1.0, "heartbeat_interval": BEAT},
    "performance": {"interval": 1.0, "heartbeat_interval": BEAT},
}
STARTUP = 40.0  # a `bgagents` process imports, connects and registers (two cores, many processes)
# A cut-off host's TCP connections resume at the next retransmission, which backs off while
# the link is down (up to about as long as the cut lasted), then its processes beat again.
RECOVERY = 60.0

LEASE_LOG = """
CREATE TABLE public.lease_log (
    task_id bigint, holder text, lease_until timestamptz, status text, attempts int,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION public.log_lease() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.locked_by IS DISTINCT FROM OLD.locked_by OR NEW.lease_until IS DISTINCT FROM OLD.lease_until
       OR NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO public.lease_log (task_id, holder, lease_until, status, attempts)
        VALUES (NEW.id, NEW.locked_by, NEW.lease_until, NEW.status, NEW.attempts);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER lease_log AFTER UPDATE ON bg.tasks FOR EACH ROW EXECUTE FUNCTION public.log_lease();
"""


@pytest.fixture
async def conn(lab_db: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection from the root namespace, over TCP like the hosts'."""
    connection = await asyncpg.connect(lab_db)
    await connection.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    yield connection
    await connection.close()


@pytest.fixture
def fleet(hosts_fleet: HostsFleet, tmp_path: Path) -> HostsFleet:
    monitoring = tmp_path / "monitoring.yml"
    monitoring.write_text(yaml.safe_dump(MONITORING))
    runs = tmp_path / "runs"
    runs.mkdir()
    hosts_fleet.env["BGAGENTS_MONITORING_FILE"] = str(monitoring)
    hosts_fleet.env[RUNS_DIR_ENV] = str(runs)
    return hosts_fleet


# --- probes ---------------------------------------------------------------------------------


async def instances(conn: asyncpg.Connection, proc: subprocess.Popen[bytes]) -> dict[str, asyncpg.Record]:
    """The bg.agents rows of one process, by agent name."""
    return {r["name"]: r for r in await conn.fetch("select * from bg.agents where pid = $1", proc.pid)}


def all_up(conn: asyncpg.Connection, proc: subprocess.Popen[bytes], names: set[str]) -> Any:
    async def probe() -> dict[str, asyncpg.Record] | None:
        rows = await instances(conn, proc)
        ok = set(rows) == names and all(
            (r["status"], r["health"]) == ("running", "up") and r["last_beat_at"] for r in rows.values()
        )
        return rows if ok else None

    return probe


async def leader(conn: asyncpg.Connection) -> str | None:
    holder: str | None = await conn.fetchval(
        "select holder from bg.leases where role = 'coordinator' and lease_until > now()"
    )
    return holder


async def tasks_of(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch("select * from bg.tasks where queue = $1 order by id", QUEUE))


def executions(runs: Path) -> dict[int, list[dict[str, Any]]]:
    """Every run of every task from the handler's files: start, end (None: never ended), host, pid."""
    started: dict[tuple[int, str, int, int], dict[str, Any]] = {}
    for path in runs.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            key = (event["task"], event["host"], event["pid"], event["attempt"])
            if event["event"] == "start":
                started[key] = {**event, "start": event["t"], "end": None}
            else:
                started[key]["end"] = event["t"]
    by_task: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for run in started.values():
        by_task[run["task"]].append(run)
    return {task: sorted(runs, key=lambda r: r["start"]) for task, runs in by_task.items()}


def lease_end(log: list[asyncpg.Record], host: str, pid: int, start: float) -> float:
    """The last moment any lease of the claim behind a run (by ``host``/``pid`` before ``start``) held."""
    prefix = f"{host}:{pid}:"
    claims = [r for r in log if (r["holder"] or "").startswith(prefix) and r["at"].timestamp() <= start]
    assert claims, f"no claim by {prefix} before the run at {start}"
    holder = claims[-1]["holder"]
    at = claims[-1]["at"]
    ends: list[datetime] = []
    for row in log:
        if row["at"] < at:
            continue
        if row["holder"] != holder:
            break  # the next holder, or done/released: this claim is over
        ends.append(row["lease_until"])
    return max(ends).timestamp()


def check_no_run_inside_a_valid_lease(log: list[asyncpg.Record], runs: list[dict[str, Any]]) -> None:
    for earlier, later in itertools.pairwise(runs):
        until = lease_end(log, earlier["host"], earlier["pid"], earlier["start"])
        assert later["start"] >= until, (
            f"task {later['task']} ran again on {later['host']} at {later['start']:.3f} while "
            f"{earlier['host']}'s lease held until {until:.3f}"
        )
        claim = [r for r in log if (r["holder"] or "").startswith(f"{later['host']}:{later['pid']}:")]
        assert claim and claim[0]["at"].timestamp() >= until  # the server too granted it only afterwards


# --- a host cut off and back ------------------------------------------------------------------


async def test_a_cut_off_host_loses_its_leases_and_leadership_and_comes_back_up(
    lab: Lab,
    conn: asyncpg.Connection,
    fleet: HostsFleet,
    tmp_path: Path,
) -> None:
    host_a, host_b = lab.hosts[0], lab.hosts[1]
    await conn.execute(LEASE_LOG)
    handler = "tests.handlers:slow_recorded"
    worker_args = ("worker", "-q", QUEUE, "--handler", handler, "-c", "3", "--lease", str(LEASE))

    # host-a runs the leading coordinator and its performance monitor; host-b watches
    agents_a = fleet.start(host_a, "run", "coordinator", "performance")
    rows_a = await fleet.wait(all_up(conn, agents_a, {"coordinator", "performance"}), STARTUP, "host-a up")
    assert {r["host"] for r in rows_a.values()} == {host_a.hostname}
    coordinator_a: str = rows_a["coordinator"]["instance_id"]

    async def a_leads() -> bool:
        return await leader(conn) == coordinator_a

    await fleet.wait(a_leads, 10, "host-a's coordinator leads")
    agents_b = fleet.start(host_b, "run", "coordinator", "heartbeat", "performance")
    rows_b = await fleet.wait(
        all_up(conn, agents_b, {"coordinator", "heartbeat", "performance"}), STARTUP, "host-b up"
    )
    coordinator_b: str = rows_b["coordinator"]["instance_id"]

    # host-a's worker holds every task; host-b's worker has nothing to take until those leases go
    ids = [
        await conn.fetchval("select bg.enqueue($1, $2)", QUEUE, {"seconds": TASK_SECONDS}) for _ in range(3)
    ]
    fleet.start(host_a, *worker_args)

    async def held_by_a() -> bool:
        rows = await tasks_of(conn)
        mine = f"{host_a.hostname}:"
        return all(r["status"] == "running" and r["locked_by"].startswith(mine) for r in rows)

    await fleet.wait(held_by_a, STARTUP, "host-a's worker holds the three tasks")
    worker_b = fleet.start(host_b, *worker_args)

    lab.network.cut(host_a)
    cut_at = time.monotonic()

    async def b_leads() -> bool:
        return await leader(conn) == coordinator_b

    await fleet.wait(b_leads, 15, "the leader moves to host-b")

    async def a_down_alerts() -> list[asyncpg.Record] | None:
        rows = await conn.fetch(
            "select * from bg.alerts where rule = 'agent_down' and state = 'firing' and labels->>'host' = $1",
            host_a.hostname,
        )
        return list(rows) if {r["labels"]["agent"] for r in rows} == {"coordinator", "performance"} else None

    alerts = await fleet.wait(a_down_alerts, 20, "agent_down firing for host-a's agents")
    assert all(r["labels"] == {"agent": r["labels"]["agent"], "host": host_a.hostname} for r in alerts)
    for name, row in (await instances(conn, agents_a)).items():
        assert row["health"] == "down", name
    assert all(r["health"] == "up" for r in (await instances(conn, agents_b)).values())

    async def redone_on_b() -> list[asyncpg.Record] | None:
        rows = await tasks_of(conn)
        return rows if all(r["status"] == "done" for r in rows) else None

    done = await fleet.wait(redone_on_b, LEASE + TASK_SECONDS + 20, "host-b redoes host-a's tasks")
    assert [r["id"] for r in done] == ids
    assert all(r["result"]["host"] == host_b.hostname for r in done), [r["result"] for r in done]
    assert all(r["attempts"] == 2 for r in done)

    # the link comes back: host-a's processes reconnect, re-register, turn up; b keeps the lead
    lab.network.restore(host_a)
    cut_for = time.monotonic() - cut_at
    back = await fleet.wait(
        all_up(conn, agents_a, {"coordinator", "performance"}), RECOVERY, "host-a up again"
    )
    assert back["coordinator"]["instance_id"] == coordinator_a

    async def resolved() -> bool:
        states = await conn.fetch(
            "select state from bg.alerts where rule = 'agent_down' and labels->>'host' = $1", host_a.hostname
        )
        return bool(states) and all(r["state"] == "resolved" for r in states)

    await fleet.wait(resolved, 20, "host-a's agent_down alerts resolved")

    async def a_standby() -> bool:
        note = await conn.fetchval("select note from bg.agents where instance_id = $1", coordinator_a)
        return bool(note == f"standby (leader: {coordinator_b})")

    await fleet.wait(a_standby, 20, "host-a's coordinator stands by")
    assert await leader(conn) == coordinator_b
    status = await asyncio.to_thread(
        subprocess.run,
        [*BGAGENTS, "status", "--json"],
        env=fleet.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(status.stdout)
    listed = {a["instance_id"]: a for a in report["agents"]}
    assert listed[coordinator_a]["note"].startswith("standby") and listed[coordinator_b]["note"] == "leader"

    # host-a's worker works again: with host-b's worker stopped, it takes the next task
    worker_b.terminate()
    assert worker_b.wait(30) == 0, fleet.report()
    again = await conn.fetchval("select bg.enqueue($1, $2)", QUEUE, {"seconds": 0.1})

    async def done_by_a() -> asyncpg.Record | None:
        row = await conn.fetchrow("select * from bg.tasks where id = $1", again)
        return row if row["status"] == "done" else None

    last = await fleet.wait(done_by_a, RECOVERY, "host-a's worker does a task after the cut")
    assert last["result"]["host"] == host_a.hostname

    log = list(await conn.fetch("select * from public.lease_log order by at"))
    runs = executions(tmp_path / "runs")
    for task_id in ids:
        assert [r["host"] for r in runs[task_id]] == [host_a.hostname, host_b.hostname], runs[task_id]
        check_no_run_inside_a_valid_lease([r for r in log if r["task_id"] == task_id], runs[task_id])
    assert cut_for < LEASE + TASK_SECONDS + 60  # the whole cut, for the record


# --- the performance monitor, once per host ---------------------------------------------------


async def test_the_performance_monitor_runs_once_per_host_with_its_host_label(
    lab: Lab,
    conn: asyncpg.Connection,
    fleet: HostsFleet,
) -> None:
    procs = {host.hostname: fleet.start(host, "run", "performance") for host in lab.hosts}
    for hostname, proc in procs.items():
        rows = await fleet.wait(all_up(conn, proc, {"performance"}), STARTUP, f"performance on {hostname}")
        assert rows["performance"]["host"] == hostname

    async def every_host_sampled() -> list[asyncpg.Record] | None:
        rows = await conn.fetch(
            "select host, count(distinct ts) as samples from bg.performance_metrics "
            "where source = 'host' group by host"
        )
        ok = {r["host"] for r in rows} == set(procs) and all(r["samples"] >= 2 for r in rows)
        return list(rows) if ok else None

    await fleet.wait(every_host_sampled, 30, "two samplings of each host")
    monitors = await conn.fetch(
        "select host, count(*) as n from bg.agents where name = 'performance' group by host"
    )
    assert {r["host"]: r["n"] for r in monitors} == dict.fromkeys(procs, 1)
    # each monitor samples the agent processes of its own host only, under its own host label
    owners = await conn.fetch(
        "select distinct m.host, a.host as agent_host from bg.performance_metrics m "
        "join bg.agents a using (instance_id) where m.source <> 'host'"
    )
    assert owners and all(r["host"] == r["agent_host"] for r in owners)
    assert {r["host"] for r in owners} == set(procs)


# --- the queue benchmark over hosts -------------------------------------------------------------


def test_bench_queue_over_hosts_prints_the_figures_of_one_host_and_of_n(cli_env: dict[str, str]) -> None:
    require_netns()
    args = ["--hosts", "2", "--dequeuers", "2", "--seconds", "2", "--rounds", "1", "--json"]
    result = subprocess.run(
        [*BGAGENTS, "bench", "queue", *args],
        env=cli_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["hosts"] == 2 and summary["mode"] == "throughput"
    for key in ("1_host", "2_hosts"):
        assert summary[f"{key}_jobs_per_s"] > 0, summary
        assert 0 < summary[f"{key}_p50_ms"] <= summary[f"{key}_p99_ms"], summary
    rows = result.stdout.splitlines()[:-1]
    assert [r.split("  ")[0] for r in rows] == [
        "1 host jobs/s",
        "1 host p50 / p99 ms",
        "2 hosts jobs/s",
        "2 hosts p50 / p99 ms",
        "2 hosts / 1 host jobs/s",
    ]
    names = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert "bgn1-" not in names  # the benchmark removed its bridge and veths
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert "bgn1-" not in namespaces
