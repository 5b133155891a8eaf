"""``bgagents bench soak``: a steady mixed load under a chaos loop, then an exact audit and a report.

The load: tasks at a fixed rate through real ``bgagents worker`` processes (a
handler that fails on purpose, so retries happen), events at a fixed rate,
SSE clients on two real ``bgagents web`` processes that resume by cursor after
every disconnect, and heartbeats of 50 simulated agents watched by the real
heartbeat agent. The chaos loop, on a schedule printed at the start, kills a
worker (SIGKILL), ends the LISTEN connections, kills a web server under its
clients, stalls an SSE client, silences five agents and restarts PostgreSQL
(the embedded server only). Then it audits (see :mod:`agents.bench.soak_audit`),
writes an HTML report and exits 1 on any loss. It runs in the scratch
database; ``--short`` is the 40-second variant CI runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import click

from agents.bench.common import bench, bench_database
from agents.bench.soak_load import SOAK_CHANNEL, SOAK_QUEUE, Load
from agents.bench.soak_procs import Children, MemorySampler, wait_healthy
from agents.bench.soak_result import SoakRun, finish
from agents.bench.soak_sse import SseClient
from agents.builtin.heartbeat import HeartbeatHealthAgent
from agents.cli.root import settings_of
from agents.runtime.supervisor import Supervisor
from bus import chaos, maintenance, scratch
from bus.client import Bus
from bus.config import Settings
from bus.errors import DatabaseError

logger = logging.getLogger(__name__)

FAULTS = ("stall-sse", "kill-worker", "terminate-listen", "kill-web", "quiet-agents", "restart-postgres")
CYCLE_S = 300.0
"""One round of every fault per this many seconds of run (at least one round)."""
SHORT_S = 40.0
AGENTS = 50
BURST, BURST_BYTES = 400, 16384
"""The burst that follows a stall: more than the kernel buffers between server and client hold."""
QUIET = 5
"""Simulated agents the ``quiet-agents`` fault silences (long enough for an alert to fire)."""


@dataclass(frozen=True)
class Fault:
    """A fault due ``at`` seconds into the run."""

    at: float
    name: str


@dataclass(frozen=True)
class Options:
    """The run's shape."""

    seconds: float
    task_rate: float
    event_rate: float
    workers: int
    clients: int
    stall_s: float
    quiet_s: float
    drain_s: float
    report: Path | None


def schedule(seconds: float, restart_postgres: bool) -> list[Fault]:
    """Every fault once per :data:`CYCLE_S`, spread evenly over 20-80 % of the run."""
    names = [f for f in FAULTS if restart_postgres or f != "restart-postgres"]
    total = max(1, round(seconds / CYCLE_S)) * len(names)
    start, step = 0.2 * seconds, 0.6 * seconds / total
    return [Fault(round(start + i * step, 1), names[i % len(names)]) for i in range(total)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Soak:
    """One soak run: its processes, clients, load and chaos loop."""

    def __init__(self, settings: Settings, url: str, opts: Options, run_dir: Path) -> None:
        self.settings, self.url, self.opts, self.run_dir = settings, url, opts, run_dir
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "BGAGENTS_HOST": "127.0.0.1",
            "BGAGENTS_LOG_LEVEL": "WARNING",
        }
        env.pop("BGAGENTS_TOKEN", None)
        self.children = Children(run_dir, env)
        self.ports = {"web-steady": _free_port(), "web-victim": _free_port()}
        self.host = f"soak-{socket.gethostname()}"
        self.began = time.monotonic()
        self.faults_done: list[Fault] = []
        self.notes: list[str] = []
        self.failed_faults: list[str] = []
        self.background: list[asyncio.Task[object]] = []
        self.outages: list[float] = []

    def base(self, role: str) -> str:
        return f"http://127.0.0.1:{self.ports[role]}"

    def start_web(self, role: str) -> None:
        self.children.start(role, ["web"], {"BGAGENTS_PORT": str(self.ports[role])})

    def start_processes(self) -> None:
        for i in range(self.opts.workers):
            args = ["worker", "--queue", SOAK_QUEUE, "--handler", "agents.bench.soak_handler:handle"]
            self.children.start(f"worker-{i}", [*args, "--lease", "5", "--concurrency", "10"])
        for role in self.ports:
            self.start_web(role)

    async def restart_postgres(self) -> str:
        """Stop and start the embedded server with ``bgagents db stop|start`` (its own processes)."""
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env["BGAGENTS_DATA_DIR"] = str(self.settings.data_dir)
        began = time.monotonic()
        for action in ("stop", "start"):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agents.cli.main", "db", action, env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await proc.communicate()
            if proc.returncode != 0:
                lines = err.decode().strip().splitlines() or ["no message"]
                raise RuntimeError(f"bgagents db {action} failed: {lines[-1]}")
        self.outages.append(time.monotonic() - began)
        return f"server down and back in {self.outages[-1]:.1f} s"

    async def apply(
        self, fault: Fault, bus: Bus, load: Load, clients: list[SseClient], ids: list[str]
    ) -> str:
        """Inject ``fault``; a one-line account of what was done."""
        if fault.name == "kill-worker":
            old = self.children.children["worker-0"].label
            return f"SIGKILL {old}; started {self.children.kill('worker-0').label}"
        if fault.name == "terminate-listen":
            pids = await chaos.terminate_listeners(bus.pool)
            return f"ended {len(pids)} LISTEN connections"
        if fault.name == "kill-web":
            old = self.children.children["web-victim"].label
            new = self.children.kill("web-victim")
            took = await wait_healthy(self.base("web-victim"), new)
            return f"SIGKILL {old}; {new.label} healthy after {took:.1f} s"
        if fault.name == "stall-sse":
            clients[0].stall(self.opts.stall_s)
            sent = await load.burst(BURST, BURST_BYTES)
            return (
                f"{clients[0].name} stops reading for {self.opts.stall_s:.0f} s; "
                f"a burst of {sent} events of {BURST_BYTES // 1024} KB follows"
            )
        if fault.name == "quiet-agents":
            load.quiet.update(ids[:QUIET])
            asyncio.get_running_loop().call_later(self.opts.quiet_s, load.quiet.clear)
            return f"{QUIET} agents stop beating for {self.opts.quiet_s:.0f} s"
        return await self.restart_postgres()

    async def chaos_loop(
        self, plan: list[Fault], bus: Bus, load: Load, clients: list[SseClient], ids: list[str]
    ) -> None:
        for fault in plan:
            pause = fault.at - (time.monotonic() - self.began)
            if pause > 0:
                await asyncio.sleep(pause)
            at = time.monotonic() - self.began
            try:
                detail = await self.apply(fault, bus, load, clients, ids)
            except (DatabaseError, RuntimeError) as exc:
                detail = f"could not inject: {exc}"
                self.failed_faults.append(f"{fault.name} at {at:.0f} s")
            self.faults_done.append(Fault(round(at, 1), fault.name))
            click.echo(f"  {at:7.1f} s  {fault.name:<17} {detail}")

    async def watchdog(self, stop: asyncio.Event) -> None:
        """Restart (and count) any child that exits on its own."""
        while not stop.is_set():
            for line in self.children.check():
                click.echo(f"  unexpected exit: {line}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def drain(self, bus: Bus, clients: list[SseClient], logged: list[int]) -> bool:
        """Wait for every task to finish, every client to catch up and every alert to clear."""
        deadline = time.monotonic() + self.opts.drain_s
        want = set(logged)
        while time.monotonic() < deadline:
            try:
                await maintenance.run_once(bus.pool, self.settings)  # fails tasks whose last lease expired
                settled = await chaos.unsettled(bus.pool, SOAK_QUEUE) == 0
                alerts_clear = await chaos.open_alerts(bus.pool, self.host) == 0
            except DatabaseError:
                settled = alerts_clear = False
            if settled and alerts_clear and all(want <= c.seen for c in clients):
                return True
            await asyncio.sleep(1.0)
        return False

    async def logged_events(self, bus: Bus, cursor: str) -> list[int]:
        """Ids of every event on the soak's channel after ``cursor``, from the log."""
        ids: list[int] = []
        while True:
            page = await bus.events.read_after(cursor, [SOAK_CHANNEL], limit=1000)
            if not page:
                return ids
            ids.extend(e.id for e in page)
            cursor = page[-1].cursor

    async def run(self) -> SoakRun:
        bus_settings = replace(self.settings, database_url=self.url, pool_min=2, pool_max=20)
        async with Bus.connect(bus_settings) as bus:
            await scratch.empty_tasks(bus.pool)
            await scratch.empty_events(bus.pool)
            await scratch.clear_alerts(bus.pool)
            await scratch.forget_host_agents(bus.pool, self.host)
            self.start_processes()
            try:
                return await self._run(bus)
            finally:
                for job in self.background:  # the watchdog first, or it would restart what stops
                    job.cancel()
                await asyncio.gather(*self.background, return_exceptions=True)
                self.children.stop_all()
                await scratch.forget_host_agents(bus.pool, self.host)

    async def _run(self, bus: Bus) -> SoakRun:
        opts = self.opts
        for role in self.ports:
            await wait_healthy(self.base(role), self.children.children[role])
        start_cursor = await bus.events.current_cursor()
        clients = [
            SseClient(f"sse-{role.removeprefix('web-')}-{i}", self.base(role), SOAK_CHANNEL, start_cursor,
                      self.began, small_buffer=(i == 0))
            for role in self.ports for i in range(opts.clients)
        ]  # fmt: skip
        load = Load(bus, self.began)
        ids = [f"sim-{i}@{self.host}" for i in range(AGENTS)]
        await load.register(ids, self.host)
        stop_load, stop_all = asyncio.Event(), asyncio.Event()
        background = self.background
        background.extend(asyncio.create_task(c.run(stop_all)) for c in clients)
        background.append(asyncio.create_task(load.heartbeats(ids, stop_all)))
        background.append(asyncio.create_task(self.watchdog(stop_all)))
        supervisor = Supervisor(bus, [HeartbeatHealthAgent(bus, HeartbeatHealthAgent.Config(interval=1.0))])
        supervising = asyncio.create_task(supervisor.run())
        plan = schedule(opts.seconds, self.settings.uses_embedded)
        self.report_schedule(plan)
        self.began = time.monotonic()
        epoch0 = time.time()
        for c in clients:
            c.began = self.began
        load.began = self.began
        sampler = MemorySampler(self.children, self.began, every=max(1.0, min(5.0, opts.seconds / 60)))
        stop_sampling = asyncio.Event()
        workload = [
            asyncio.create_task(load.enqueue(opts.task_rate, stop_load, work_s=0.02)),
            asyncio.create_task(load.publish(opts.event_rate, stop_load, pad=1024)),
            asyncio.create_task(sampler.run(stop_sampling)),
        ]
        chaos_task = asyncio.create_task(self.chaos_loop(plan, bus, load, clients, ids))
        background.extend([*workload, chaos_task])
        await asyncio.sleep(opts.seconds)
        stop_sampling.set()
        stop_load.set()
        await asyncio.gather(*workload, chaos_task)
        loaded = time.monotonic() - self.began
        click.echo(f"load stopped after {loaded:.1f} s; draining (up to {opts.drain_s:.0f} s)")
        logged = await self.logged_events(bus, start_cursor)
        drained = await self.drain(bus, clients, logged)
        rows = await chaos.task_outcomes(bus.pool, SOAK_QUEUE)
        alerts_open = await chaos.open_alerts(bus.pool, self.host)
        alerts_raised = await chaos.alerts_raised(bus.pool, self.host)
        stop_all.set()
        supervisor.stop()
        await supervising
        for job in background:
            job.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        return SoakRun(
            seconds=opts.seconds, epoch0=epoch0, drained=drained, load=load, clients=clients,
            logged=logged, rows=rows, alerts_open=alerts_open, alerts_raised=alerts_raised,
            memory=sampler.series, faults=self.faults_done, crashes=self.children.crashes,
            notes=self.notes, outages=self.outages, failed_faults=self.failed_faults,
        )  # fmt: skip

    def report_schedule(self, plan: list[Fault]) -> None:
        o = self.opts
        click.echo(
            f"soak: {o.seconds:.0f} s, {o.task_rate:g} tasks/s through {o.workers} workers, "
            f"{o.event_rate:g} events/s to {2 * o.clients} SSE clients on 2 web servers, "
            f"{AGENTS} agents beating"
        )
        click.echo(f"logs of the child processes: {self.run_dir}")
        if not self.settings.uses_embedded:
            note = "restart-postgres skipped: DATABASE_URL names a server this command does not manage"
            self.notes.append(note)
            click.echo(f"note: {note}")
        click.echo("chaos schedule (seconds into the run):")
        for fault in plan:
            click.echo(f"  {fault.at:7.1f} s  {fault.name}")
        click.echo("faults as injected:")


@bench.command("soak")
@click.option("--minutes", default=30.0, show_default=True, type=click.FloatRange(0.5, 24 * 60))
@click.option("--short", is_flag=True, help=f"The CI variant: {SHORT_S:.0f} s of load (overrides --minutes).")
@click.option("--task-rate", default=20.0, show_default=True, type=click.FloatRange(1, 1000))
@click.option("--event-rate", default=10.0, show_default=True, type=click.FloatRange(1, 1000))
@click.option("--workers", default=3, show_default=True, type=click.IntRange(2, 32))
@click.option(
    "--clients", default=3, show_default=True, type=click.IntRange(1, 100), help="SSE clients per web server."
)
@click.option("--report", "report", default=None, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def bench_soak(
    ctx: click.Context, minutes: float, short: bool, task_rate: float, event_rate: float,
    workers: int, clients: int, report: Path | None,
) -> None:  # fmt: skip
    """A mixed load under faults for N minutes; audits losses and memory, writes an HTML report."""
    settings = settings_of(ctx)
    if settings.log_level != "DEBUG":
        # The in-process heartbeat agent's news (and its restart after the server's) would drown the audit.
        for name in ("agents", "bus", "asyncpg"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    seconds = SHORT_S if short else minutes * 60
    opts = Options(
        seconds=seconds, task_rate=task_rate, event_rate=event_rate, workers=workers, clients=clients,
        stall_s=25.0, quiet_s=12.0, drain_s=90.0, report=report,
    )  # fmt: skip
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = settings.data_dir / "soak" / f"soak-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    path = report or settings.data_dir / "soak" / f"soak-{stamp}.html"

    async def go() -> SoakRun:
        return await Soak(settings, await bench_database(settings), opts, run_dir).run()

    ok = finish(asyncio.run(go()), path)
    if not ok:
        ctx.exit(1)
