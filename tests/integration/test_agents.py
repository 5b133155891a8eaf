"""The built-in agents as the Procfile runs them: real processes, real PostgreSQL.

Each test starts ``bgagents run ...`` processes against its own database, with a
monitoring file that shortens every interval, and waits for conditions with a
timeout (never a fixed sleep). Every process is stopped in a ``finally``:
SIGTERM first, SIGKILL if it does not exit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from tests.conftest import BGAGENTS
from tests.fleet import ProcessFleet

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(60)

# Short timings for every built-in agent (see agents/monitoring.yml for the meaning).
BEAT = 0.5  # every agent's heartbeat period
GRACE = 1.0
MISSES = 2
ALERT_FOR = 1.0
LEASE = 3.0
COORDINATOR_INTERVAL = 0.5
MONITORING: dict[str, dict[str, Any]] = {
    "coordinator": {
        "interval": COORDINATOR_INTERVAL,
        "lease": LEASE,
        "dead_after": 3.0,
        "heartbeat_interval": BEAT,
    },
    "heartbeat": {
        "interval": 0.5,
        "grace": GRACE,
        "misses": MISSES,
        "alert_for": ALERT_FOR,
        "heartbeat_interval": BEAT,
    },
    "performance": {"interval": 1.0, "heartbeat_interval": BEAT},
}
# An agent_down alert fires at most period × misses + grace + for after the last beat...
ALERT_BUDGET = BEAT * MISSES + GRACE + ALERT_FOR
# ...plus the heartbeat agent's polling (one interval to see "down", one to fire) and slack.
POLL_SLACK = 2.5
STARTUP = 20.0  # a fresh `bgagents run` imports, connects and registers


# --- processes --------------------------------------------------------------------------


class Fleet(ProcessFleet):
    """``bgagents`` processes of one test on this host, each logging to its own file."""

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        return self.spawn("-".join(args), args)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    """Send ``sig`` (if it runs) and wait; SIGKILL after ``timeout``. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"pid {proc.pid} ignored signal {sig} for {timeout}s") from None


def kill9(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL


@pytest.fixture
def env(db_url: str, cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    monitoring = tmp_path / "monitoring.yml"
    monitoring.write_text(yaml.safe_dump(MONITORING))
    return {
        **cli_env,
        "DATABASE_URL": db_url,
        "BGAGENTS_MONITORING_FILE": str(monitoring.resolve()),
        "BGAGENTS_POOL_MIN": "1",
    }


@pytest.fixture
def fleet(env: dict[str, str], tmp_path: Path) -> Iterator[Fleet]:
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = Fleet(env, logs)
    try:
        yield processes
    finally:
        processes.stop_all()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BGAGENTS, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)


def status_json(env: dict[str, str]) -> dict[str, Any]:
    result = cli(env, "status", "--json")
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in (result.stdout + result.stderr).splitlines() if ln.lower().startswith("error:")]


# --- SQL probes ---------------------------------------------------------------------------


async def row_of(conn: asyncpg.Connection, proc: subprocess.Popen[bytes]) -> asyncpg.Record | None:
    """The newest bg.agents row of a process."""
    return await conn.fetchrow(
        "select * from bg.agents where pid = $1 order by started_at desc limit 1", proc.pid
    )


def running_up(conn: asyncpg.Connection, proc: subprocess.Popen[bytes]) -> Callable[[], Awaitable[Any]]:
    async def probe() -> asyncpg.Record | None:
        row = await row_of(conn, proc)
        if row is None or row["last_beat_at"] is None:
            return None
        return row if (row["status"], row["health"]) == ("running", "up") else None

    return probe


def in_state(
    conn: asyncpg.Connection, proc: subprocess.Popen[bytes], status: str, health: str | None = None
) -> Callable[[], Awaitable[Any]]:
    async def probe() -> asyncpg.Record | None:
        row = await row_of(conn, proc)
        ok = row is not None and row["status"] == status and (health is None or row["health"] == health)
        return row if ok else None

    return probe


async def agent_down_alerts(conn: asyncpg.Connection, agent: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "select * from bg.alerts where rule = 'agent_down' and labels->>'agent' = $1 order by id",
            agent,
        )
    )


# --- kill -9 → down → agent_down fires → restart resolves it ------------------------------------


async def test_killed_agent_goes_down_fires_agent_down_and_a_restart_resolves_it(
    conn: asyncpg.Connection, fleet: Fleet, env: dict[str, str]
) -> None:
    procs = {name: fleet.start("run", name) for name in ("coordinator", "heartbeat", "performance")}
    rows = {
        name: await fleet.wait(running_up(conn, proc), STARTUP, f"{name} running and up")
        for name, proc in procs.items()
    }
    victim = rows["performance"]
    host = victim["host"]
    assert victim["beat_interval_s"] == BEAT  # the monitoring file reached the agent
    assert await agent_down_alerts(conn, "performance") == []

    kill9(procs["performance"])
    killed = time.monotonic()

    async def firing() -> asyncpg.Record | None:
        alerts = [a for a in await agent_down_alerts(conn, "performance") if a["state"] == "firing"]
        return alerts[0] if alerts else None

    alert = await fleet.wait(firing, ALERT_BUDGET + POLL_SLACK + 3, "agent_down for performance firing")
    elapsed = time.monotonic() - killed
    assert elapsed <= ALERT_BUDGET + POLL_SLACK, f"agent_down fired {elapsed:.2f}s after kill -9"
    assert alert["labels"] == {"agent": "performance", "host": host}
    assert alert["severity"] == "critical"
    assert alert["fired_at"] - alert["started_at"] >= timedelta(seconds=ALERT_FOR)
    assert len(await agent_down_alerts(conn, "performance")) == 1  # never two alerts for one condition
    dead = await row_of(conn, procs["performance"])
    assert dead is not None and dead["instance_id"] == victim["instance_id"]
    assert dead["health"] == "down"
    # the others are unaffected
    for name in ("coordinator", "heartbeat"):
        assert await running_up(conn, procs[name])(), name

    report = status_json(env)
    assert report["healthy"] is False
    assert report["summary"]["firing"] == 1
    assert [a["id"] for a in report["alerts"]] == [alert["id"]]
    assert report["alerts"][0]["labels"] == {"agent": "performance", "host": host}
    listed = {a["instance_id"]: a for a in report["agents"]}
    assert listed[victim["instance_id"]]["health"] == "down"

    replacement = fleet.start("run", "performance")

    async def resolved() -> asyncpg.Record | None:
        row = await conn.fetchrow("select * from bg.alerts where id = $1", alert["id"])
        return row if row["state"] == "resolved" else None

    done = await fleet.wait(resolved, STARTUP, "agent_down resolved after the restart")
    assert done["resolved_at"] is not None
    fresh = await fleet.wait(running_up(conn, replacement), STARTUP, "the new performance up")
    assert fresh["instance_id"] != victim["instance_id"]
    assert [a["state"] for a in await agent_down_alerts(conn, "performance")] == ["resolved"]
    # the coordinator marks the killed instance dead (dead_after: 3)
    await fleet.wait(in_state(conn, procs["performance"], "dead", "down"), 10, "killed instance dead")

    report = status_json(env)
    assert report["summary"]["firing"] == 0 and report["alerts"] == []
    listed = {a["instance_id"]: a for a in report["agents"]}
    assert (listed[fresh["instance_id"]]["status"], listed[fresh["instance_id"]]["health"]) == (
        "running",
        "up",
    )
    assert listed[victim["instance_id"]]["status"] == "dead"


async def test_status_is_healthy_once_a_dead_instance_was_replaced(
    conn: asyncpg.Connection, env: dict[str, str]
) -> None:
    """Until 6266420, health_summary counted every dead instance as down: `healthy` stayed false
    for deregister_after (1 h) after a crashed agent was replaced and its alert resolved."""
    # what the agents leave behind after test_killed_agent_goes_down...: the killed instance
    # marked dead (health down, by the heartbeat agent), its replacement up, the alert resolved
    await conn.execute(
        """
        insert into bg.agents (instance_id, name, host, pid, status, health, last_beat_at)
        values ('performance@h:1:aaaaaa', 'performance', 'h', 1, 'dead', 'down', now() - interval '1 min'),
               ('performance@h:2:bbbbbb', 'performance', 'h', 2, 'running', 'up', now())
        """
    )
    report = status_json(env)
    assert report["summary"]["live"] == 1 and report["summary"]["up"] == 1
    assert report["summary"]["firing"] == 0
    assert report["healthy"] is True, report["summary"]


# --- two coordinators: one leader, fail-over on kill -9 -----------------------------------------


async def test_two_coordinators_elect_one_leader_and_fail_over_on_kill(
    conn: asyncpg.Connection, fleet: Fleet
) -> None:
    first = fleet.start("run", "coordinator")
    second = fleet.start("run", "coordinator")
    a = await fleet.wait(running_up(conn, first), STARTUP, "first coordinator running")
    b = await fleet.wait(running_up(conn, second), STARTUP, "second coordinator running")
    ids = {a["instance_id"]: first, b["instance_id"]: second}

    async def settled() -> tuple[str, str] | None:
        holder = await conn.fetchval("select holder from bg.leases where role = 'coordinator'")
        notes = {r["instance_id"]: r["note"] for r in await conn.fetch("select * from bg.agents")}
        if holder not in ids or any(notes.get(i) is None for i in ids):
            return None
        other = next(i for i in ids if i != holder)
        return holder, other

    leader, standby = await fleet.wait(settled, 10, "a leader and a standby")
    assert await conn.fetchval("select count(*) from bg.leases") == 1
    notes = {r["instance_id"]: r["note"] for r in await conn.fetch("select * from bg.agents")}
    assert notes[leader] == "leader"
    assert notes[standby] == f"standby (leader: {leader})"
    assert [n for n in notes.values() if n == "leader"] == ["leader"]  # exactly one leader

    kill9(ids[leader])
    killed = time.monotonic()

    async def taken_over() -> bool:
        holder = await conn.fetchval("select holder from bg.leases where role = 'coordinator'")
        return bool(holder == standby)

    await fleet.wait(taken_over, 15, "the standby holds the lease")
    elapsed = time.monotonic() - killed
    assert elapsed < 10, f"fail-over took {elapsed:.2f}s"
    assert elapsed <= LEASE + COORDINATOR_INTERVAL + 2.0, f"fail-over took {elapsed:.2f}s"

    async def noted() -> bool:
        note = await conn.fetchval("select note from bg.agents where instance_id = $1", standby)
        return bool(note == "leader")

    await fleet.wait(noted, 5, "the new leader's note")
    # the new leader marks the old one dead (dead_after: 3)
    await fleet.wait(in_state(conn, ids[leader], "dead"), 10, "the killed leader marked dead")
    assert ids[standby].poll() is None


# --- pause and resume -------------------------------------------------------------------------


async def _metric_batches_since(conn: asyncpg.Connection, since: Any) -> int:
    """Distinct samplings of the performance agent after ``since``."""
    value: int = await conn.fetchval(
        "select count(distinct ts) from bg.performance_metrics where source = 'host' and ts > $1", since
    )
    return value


async def _check_pause_and_resume(
    conn: asyncpg.Connection,
    fleet: Fleet,
    pause: Callable[[], Awaitable[None]],
    resume: Callable[[], Awaitable[None]],
) -> None:
    fleet.start("run", "heartbeat")
    perf = fleet.start("run", "performance")
    before = await fleet.wait(running_up(conn, perf), STARTUP, "performance running and up")

    async def sampling() -> bool:
        return await _metric_batches_since(conn, before["started_at"]) >= 1

    await fleet.wait(sampling, 10, "performance samples")

    await pause()
    paused = await fleet.wait(in_state(conn, perf, "paused", "paused"), 10, "performance paused")
    assert paused["desired"] == "paused"
    assert paused["instance_id"] == before["instance_id"]  # the same instance, not a restart
    paused_at = await conn.fetchval("select now()")
    # while paused it keeps beating but samples nothing: wait six beats (three intervals)
    seq = paused["last_seq"]

    async def beats() -> bool:
        last = await conn.fetchval("select last_seq from bg.agents where pid = $1", perf.pid)
        return bool(last >= seq + 6)

    await fleet.wait(beats, 10, "heartbeats while paused")
    assert await _metric_batches_since(conn, paused_at) <= 1  # at most the sampling in flight
    row = await row_of(conn, perf)
    assert row is not None and (row["status"], row["health"]) == ("paused", "paused")

    await resume()
    resumed = await fleet.wait(in_state(conn, perf, "running", "up"), 10, "performance resumed")
    assert resumed["desired"] == "running"
    assert resumed["instance_id"] == before["instance_id"]
    resumed_at = await conn.fetchval("select now()")

    async def sampling_again() -> bool:
        return await _metric_batches_since(conn, resumed_at) >= 1

    await fleet.wait(sampling_again, 10, "performance samples again")
    assert perf.poll() is None


async def test_pause_and_resume_through_sql(conn: asyncpg.Connection, fleet: Fleet) -> None:
    async def pause() -> None:
        assert await conn.fetchval("select bg.agent_command('performance', 'pause')") == 1

    async def resume() -> None:
        assert await conn.fetchval("select bg.agent_command('performance', 'resume')") == 1

    await _check_pause_and_resume(conn, fleet, pause, resume)


async def test_pause_and_resume_through_the_cli(
    conn: asyncpg.Connection, fleet: Fleet, env: dict[str, str]
) -> None:
    def command(name: str) -> Callable[[], Awaitable[None]]:
        async def send() -> None:
            result = cli(env, "agent", "performance", name)
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == f"{name} sent to 1 instance(s) of performance"

        return send

    await _check_pause_and_resume(conn, fleet, command("pause"), command("resume"))


async def _insert_running(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute(
        "insert into bg.agents (instance_id, name, host, pid, status) values ($1, $2, 'h', 1, 'running')",
        f"{name}@h:1:abcdef",
        name,
    )


async def test_agent_command_rejects_an_unknown_agent_or_command_in_sql(conn: asyncpg.Connection) -> None:
    # "no running agent" is no_data_found, told apart from a bad argument by its SQLSTATE
    with pytest.raises(asyncpg.NoDataFoundError) as nobody:
        await conn.fetchval("select bg.agent_command('performance', 'pause')")
    assert "no running agent named 'performance'" in str(nobody.value)
    assert nobody.value.hint == "running agents: none"

    await _insert_running(conn, "performance")
    await _insert_running(conn, "heartbeat")
    with pytest.raises(asyncpg.NoDataFoundError) as unknown_agent:
        await conn.fetchval("select bg.agent_command('perfromance', 'pause')")
    assert "no running agent named 'perfromance'" in str(unknown_agent.value)
    assert unknown_agent.value.hint == "running agents: heartbeat, performance"

    for bad, shown in (("explode", "'explode'"), (None, "NULL")):
        with pytest.raises(asyncpg.InvalidParameterValueError) as unknown_command:
            await conn.fetchval("select bg.agent_command('performance', $1)", bad)
        assert f"unknown command {shown}" in str(unknown_command.value)
        assert unknown_command.value.hint == "one of pause, resume, stop, restart"

    # nothing was changed and no command went out
    assert await conn.fetchval("select count(*) from bg.agents where desired <> 'running'") == 0
    assert await conn.fetchval("select count(*) from bg.events where channel = 'commands'") == 0


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one ``error:`` line and no traceback; returns it."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    errors = error_lines(result)
    assert len(errors) == 1, output
    return errors[0]


async def test_cli_agent_command_for_an_unknown_agent_is_one_error_line(
    conn: asyncpg.Connection, env: dict[str, str]
) -> None:
    """Until 6266420, the CLI printed str(asyncpg error), which appends a HINT line: two lines,
    and the hint twice."""
    await _insert_running(conn, "performance")
    result = cli(env, "agent", "perfromance", "pause")
    line = assert_one_error_line(result)
    assert line.startswith("error: ")
    assert "no running agent named 'perfromance'" in line
    assert "running agents: performance" in line
    assert result.stderr.strip() == line  # the whole message is that one line...
    assert (result.stdout + result.stderr).count("running agents") == 1  # ...with the hint once
    assert await conn.fetchval("select desired from bg.agents") == "running"


async def test_cli_agent_command_for_an_unknown_agent_fails_cleanly(
    conn: asyncpg.Connection, env: dict[str, str]
) -> None:
    await _insert_running(conn, "performance")
    result = cli(env, "agent", "perfromance", "pause")
    line = assert_one_error_line(result)
    assert line.startswith("error: ")
    assert "no running agent named 'perfromance'" in line
    assert "running agents: performance" in result.stderr  # the hint, on some line
    assert await conn.fetchval("select desired from bg.agents") == "running"


async def test_cli_agent_command_rejects_an_unknown_command(
    conn: asyncpg.Connection, env: dict[str, str]
) -> None:
    await _insert_running(conn, "performance")
    result = cli(env, "agent", "performance", "explode")
    line = assert_one_error_line(result)  # click's usage error: "Error: Invalid value for ..."
    assert result.returncode == 2
    assert "'explode'" in line and all(c in line for c in ("pause", "resume", "stop", "restart"))
    assert await conn.fetchval("select desired from bg.agents") == "running"
    assert await conn.fetchval("select count(*) from bg.events where channel = 'commands'") == 0


# --- graceful stops -------------------------------------------------------------------------


async def test_sigterm_stops_an_agent_process_cleanly(conn: asyncpg.Connection, fleet: Fleet) -> None:
    proc = fleet.start("run", "heartbeat")
    row = await fleet.wait(running_up(conn, proc), STARTUP, "heartbeat running")
    assert stop(proc, signal.SIGTERM) == 0, fleet.report()
    log = fleet.log_of(proc)
    assert "Traceback" not in log, log
    after = await row_of(conn, proc)
    assert after is not None and after["instance_id"] == row["instance_id"]
    assert after["status"] == "stopped"


async def test_up_runs_every_builtin_agent_and_ctrl_c_stops_them(
    conn: asyncpg.Connection, fleet: Fleet, env: dict[str, str]
) -> None:
    fleet.env["BGAGENTS_PORT"] = str(free_port())  # `up` serves the web too
    proc = fleet.start("up")
    wanted = {"coordinator", "heartbeat", "performance", "ai-help", "langsmith-bridge"}

    async def all_up() -> dict[str, dict[str, Any]] | None:
        if proc.poll() is not None:
            raise AssertionError(f"`bgagents up` exited with {proc.returncode}\n{fleet.report()}")
        agents = {a["name"]: a for a in status_json(env)["agents"]}
        ok = set(agents) == wanted and all(
            (a["status"], a["health"], a["pid"]) == ("running", "up", proc.pid) for a in agents.values()
        )
        ok = ok and agents["coordinator"]["note"] == "leader"  # the only coordinator leads
        return agents if ok else None

    began = time.monotonic()
    agents = await fleet.wait(all_up, 15, "coordinator, heartbeat and performance up in `bgagents status`")
    assert time.monotonic() - began < 15
    assert len(agents) == 5

    assert stop(proc, signal.SIGINT) == 0, fleet.report()
    log = fleet.log_of(proc)
    assert "Traceback" not in log, log
    rows = await conn.fetch("select name, status from bg.agents order by name")
    assert [(r["name"], r["status"]) for r in rows] == [(n, "stopped") for n in sorted(wanted)]
    assert await conn.fetchval("select count(*) from bg.leases") == 0  # the leader handed over
