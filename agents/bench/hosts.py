"""``bgagents bench queue --hosts N``: the queue benchmark with its dequeuers spread over N hosts.

The hosts are network namespaces on a private bridge (:mod:`agents.bench.netns`,
``10.231.1.0/24``) and the database is a throwaway PostgreSQL listening on the
bridge, so every claim and completion crosses a veth and the bridge over TCP.
The enqueuers stay in this process. Each round runs the same shape twice on the
same server: every dequeuer in this process ("1 host", TCP to the local bridge
address) and ``--dequeuers`` split over the N hosts, one process per host, so
the difference is what the network and more processes cost. Needs root.

A host process (``python -m agents.bench.hosts``, started inside its namespace)
connects, prints ``ready``, starts its workers on ``go`` and stops them on
``stop``, then prints one JSON line: when each job ran and its latency.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import click

from agents.bench.common import BENCH_QUEUE, Round, alternate, percentile, spread
from agents.bench.netns import NetnsError, Network, TcpServer
from agents.bench.queue_runs import Shape, bench_settings, run_ours
from bus import health, scratch
from bus.client import Bus
from bus.config import Settings, load_settings
from bus.embedded import bin_dir
from bus.worker import Task

NETWORK_INDEX = 1
"""``10.231.1.0/24``: the tests use index 0, so a benchmark and the tests can run at once."""

READY_TIMEOUT = 90.0
DRAIN_TIMEOUT = 600.0


# --- inside a host ----------------------------------------------------------------------------


async def _host_main(spec: dict[str, Any]) -> None:
    """Run ``spec["dequeuers"]`` workers between ``go`` and ``stop`` on stdin; print what ran when."""
    settings = load_settings(os.environ, env_file=None)
    shape = Shape(dequeuers=spec["dequeuers"], enqueuers=0)
    ran: list[float] = []
    latencies: list[float] = []

    async def handler(task: Task) -> None:
        now = time.time()
        ran.append(now)
        latencies.append((now - task.payload["t"]) * 1000)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with Bus.connect(bench_settings(settings, settings.database_url or "", shape)) as bus:
        workers = [bus.worker(BENCH_QUEUE, handler, **spec["worker"]) for _ in range(shape.dequeuers)]
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        if (await reader.readline()).strip() == b"go":
            runs = [asyncio.create_task(w.run()) for w in workers]
            await reader.readline()  # "stop", or EOF when the benchmark died
            for w in workers:
                w.stop(grace=5)
            await asyncio.gather(*runs)
    sys.stdout.write(json.dumps({"ran": ran, "latencies": latencies}) + "\n")
    sys.stdout.flush()


# --- the benchmark ----------------------------------------------------------------------------


class _Hosts:
    """One process per host, each running its share of the dequeuers."""

    def __init__(self, network: Network, url: str, shape: Shape) -> None:
        self.network = network
        self.url = url
        self.shape = shape
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        hosts = self.network.hosts
        shares = [len(range(i, self.shape.dequeuers, len(hosts))) for i in range(len(hosts))]
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env["DATABASE_URL"] = self.url  # in the environment, so the password is not on a command line
        for host, share in zip(hosts, shares, strict=True):
            spec = json.dumps({"dequeuers": share, "worker": self.shape.worker})
            argv = host.argv([sys.executable, "-m", "agents.bench.hosts", spec])
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env
            )
            self.procs.append(proc)
        for proc, host in zip(self.procs, hosts, strict=False):
            assert proc.stdout is not None
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT)
            except TimeoutError:
                line = b""
            if line.strip() != b"ready":
                raise NetnsError(
                    f"the benchmark process on {host.hostname} did not start (exit {proc.returncode})"
                )

    async def send(self, word: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(word.encode() + b"\n")
            await proc.stdin.drain()

    async def results(self) -> tuple[list[float], list[float]]:
        """Every job's run time and latency, once each host has stopped."""
        ran: list[float] = []
        latencies: list[float] = []
        for proc in self.procs:
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            figures = json.loads(out.decode().strip().splitlines()[-1])
            ran += figures["ran"]
            latencies += figures["latencies"]
        return ran, latencies

    async def kill(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def _payloads(n: int) -> list[dict[str, float]]:
    return [{"t": time.time()}] * n


async def run_on_hosts(settings: Settings, network: Network, url: str, shape: Shape) -> dict[str, float]:
    """One round with the dequeuers in the hosts' processes; the enqueuers here."""
    hosts = _Hosts(network, url, shape)
    async with Bus.connect(bench_settings(settings, url, shape), listen=False) as bus:
        await scratch.empty_tasks(bus.pool)
        try:
            await hosts.start()
            if shape.mode == "drain":
                for start in range(0, shape.drain, 1000):
                    await bus.queue.enqueue_many(BENCH_QUEUE, _payloads(min(1000, shape.drain - start)))
                await scratch.analyze_tasks(bus.pool)
                began = time.time()
                await hosts.send("go")
                deadline = time.monotonic() + DRAIN_TIMEOUT
                while await health.queue_depth_total(bus.pool) > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)  # the queue's depth, polled: nothing announces "empty"
                await hosts.send("stop")
                ran, latencies = await hosts.results()
                elapsed = max(ran, default=began) - began
                done = len(ran)
            else:
                stop = asyncio.Event()

                async def enqueuer() -> None:
                    while not stop.is_set():
                        await bus.queue.enqueue_many(BENCH_QUEUE, _payloads(shape.enqueue_batch))

                await hosts.send("go")
                feeders = [asyncio.create_task(enqueuer()) for _ in range(shape.enqueuers)]
                began = time.time()
                await asyncio.sleep(shape.seconds)
                ended = time.time()
                stop.set()
                await asyncio.gather(*feeders)
                await hosts.send("stop")
                ran, latencies = await hosts.results()
                done = sum(1 for t in ran if began <= t <= ended)
                elapsed = ended - began
        finally:
            await hosts.kill()
        await scratch.empty_tasks(bus.pool)
    return {
        "jobs_per_s": done / elapsed if elapsed > 0 else float("nan"),
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "jobs": float(done),
    }


async def bench_hosts(
    settings: Settings, opts: dict[str, Any]
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """``bench queue --hosts N``: rows and summary of 1 host against N hosts, on one TCP server."""
    n: int = opts["hosts"]
    unsupported = [o for o in ("compare", "ceiling", "latency") if opts.get(o)]
    if opts.get("preload_finished"):
        unsupported.append("preload_finished")
    if unsupported:
        raise click.UsageError(f"--hosts does not combine with --{unsupported[0].replace('_', '-')}")
    if opts["dequeuers"] < n:
        raise click.UsageError(f"--dequeuers ({opts['dequeuers']}) must be at least --hosts ({n})")
    drain = opts["drain"] or 0
    fixed = {"concurrency": opts["dequeue_batch"], "batch": opts["dequeue_batch"]}
    shape = Shape(
        mode="drain" if drain else "throughput",
        enqueuers=opts["enqueuers"],
        enqueue_batch=opts["enqueue_batch"],
        dequeuers=opts["dequeuers"],
        worker={} if drain else fixed,
        seconds=opts["seconds"],
        drain=drain,
    )
    network = Network(n, index=NETWORK_INDEX)
    try:
        network.up()
    except NetnsError as exc:
        raise click.ClickException(f"--hosts needs network namespaces: {exc}") from None
    server = TcpServer(bin_dir(), network.gateway, network.cidr, network.prefix)
    try:
        admin = server.start(max_connections=100 + 4 * opts["dequeuers"])
        url = await scratch.prepare(Settings(**{**settings.__dict__, "database_url": admin}))
        click.echo(
            f"bench queue --hosts {n}: {shape.mode}, {opts['rounds']} alternating round(s); "
            f"{shape.enqueuers} enqueuer(s) x {shape.enqueue_batch}, {shape.dequeuers} dequeuer(s) "
            f"in 1 process, then split over {n} hosts; PostgreSQL at {network.gateway} over TCP",
            err=True,
        )
        contestants: dict[str, Round] = {
            "1 host": lambda: run_ours(settings, url, shape),
            f"{n} hosts": lambda: run_on_hosts(settings, network, url, shape),
        }
        results = await alternate(opts["rounds"], contestants)
    finally:
        server.stop()
        network.down()
    rows: list[tuple[str, str]] = []
    summary: dict[str, Any] = {"mode": shape.mode, "hosts": n, "dequeuers": shape.dequeuers}
    for name, runs in results.items():
        key = name.replace(" ", "_")
        rows.append((f"{name} jobs/s", spread(runs, "jobs_per_s").show()))
        p50, p99 = spread(runs, "p50_ms"), spread(runs, "p99_ms")
        rows.append((f"{name} p50 / p99 ms", f"{p50.show('.1f')} / {p99.show('.1f')}"))
        for figure in ("jobs_per_s", "p50_ms", "p99_ms"):
            summary[f"{key}_{figure}"] = round(spread(runs, figure).median, 2)
    ours, theirs = results["1 host"], results[f"{n} hosts"]
    ratio = spread([{"r": b["jobs_per_s"] / a["jobs_per_s"]} for a, b in zip(ours, theirs, strict=True)], "r")
    rows.append((f"{n} hosts / 1 host jobs/s", ratio.show(".2f", "x")))
    summary["ratio"] = round(ratio.median, 3)
    return rows, summary


if __name__ == "__main__":
    asyncio.run(_host_main(json.loads(sys.argv[1])))
