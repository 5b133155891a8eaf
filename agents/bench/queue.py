"""``bgagents bench queue``: our queue in PGQueuer's benchmark shape, alone or against PGQueuer.

Every figure is the median of ``--rounds`` rounds with the lowest and highest
in brackets; with ``--compare pgqueuer`` (and ``--ceiling``) the contestants
alternate round by round in one run, so a ratio compares like with like on a
machine whose speed swings. Every round starts after a CHECKPOINT (where the
user may run one), so that the last round's WAL doesn't land a checkpoint in
it, and PGQueuer gets a freshly installed schema every round.

* throughput (default): enqueuers and dequeuers at once for ``--seconds``.
* ``--drain N``: N queued jobs, drained by our workers with our defaults
  (adaptive claim batch) and in exactly PGQueuer's shape (batch fixed at
  ``--dequeue-batch``), against PGQueuer with its benchmark's settings.
* ``--ceiling``: the drain's claim and complete statements through pgbench,
  no Python in the loop; our drain as a percentage of it.
* ``--preload-finished N``: throughput and claim p99 on an empty table and,
  alternating with it, on a second scratch database that retains N finished
  tasks (kept for the next run); table and index sizes before and after.
* ``--latency``: enqueue-to-start latency at ``--rate`` tasks/s, one at a time,
  with idle workers.
* ``--profile`` (with any of them): where the time goes, this process's CPU per
  job and the server's costliest statements over all rounds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import click

from agents.bench.common import BENCH_QUEUE, Round, alternate, bench, bench_database, emit, ratios, spread
from agents.bench.queue_runs import Shape, bench_settings, prefill, run_ours
from agents.cli.root import settings_of
from bus import queue_bench, scratch
from bus.client import Bus
from bus.config import Settings

logger = logging.getLogger(__name__)

_PRELOAD_QUEUE = "bench_finished"
_PRELOAD_DB = "bgagents_bench_preloaded"
"""``--preload-finished`` measures there, alternating with the empty table in ``bgagents_bench``."""


def _row(name: str, results: list[dict[str, float]]) -> list[tuple[str, str]]:
    rows = [(f"{name} jobs/s", spread(results, "jobs_per_s").show())]
    if results and "p50_ms" in results[0]:
        p50, p99 = spread(results, "p50_ms"), spread(results, "p99_ms")
        rows.append((f"{name} p50 / p99 ms", f"{p50.show('.1f')} / {p99.show('.1f')}"))
    if results and results[0].get("enqueue_p50_ms", float("nan")) == results[0].get("enqueue_p50_ms"):
        rows.append((f"{name} enqueue call p50 ms", spread(results, "enqueue_p50_ms").show(".2f")))
    return rows


def _summary(name: str, results: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in (
        "jobs_per_s",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "claim_p99_ms",
        "enqueue_p50_ms",
        "enqueue_p99_ms",
    ):
        if results and key in results[0]:
            s = spread(results, key)
            out[f"{name}_{key}"] = round(s.median, 2)
            out[f"{name}_{key}_range"] = [round(s.low, 2), round(s.high, 2)]
    return out


async def _sizes(settings: Settings, url: str) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    async with Bus.connect(bench_settings(settings, url, Shape()), listen=False) as bus:
        tables = {r.name: r for r in await scratch.relation_sizes(bus.pool)}
        indexes = await queue_bench.index_sizes(bus.pool)
    tasks = tables["tasks"]
    mb = 1024 * 1024
    detail = ", ".join(f"{k} {v / mb:.1f}" for k, v in indexes.items())
    text = f"table {tasks.table_bytes / mb:.1f} MB, indexes {tasks.index_bytes / mb:.1f} MB ({detail})"
    return [("bg.tasks", text)], {
        "table_bytes": tasks.table_bytes,
        "index_bytes": tasks.index_bytes,
        **indexes,
    }


async def _preloaded(settings: Settings, n: int) -> tuple[str, list[tuple[str, str]], dict[str, Any]]:
    """A second scratch database holding ``n`` finished tasks (kept between runs), its sizes."""
    url = await scratch.prepare(settings, _PRELOAD_DB)
    rows = [(f"before preload: {k}", v) for k, v in (await _sizes(settings, url))[0]]
    async with Bus.connect(bench_settings(settings, url, Shape()), listen=False) as bus:
        have = (await queue_bench.counts(bus.pool, _PRELOAD_QUEUE))["done"]
        if have != n:
            await scratch.empty_tasks(bus.pool)
            await queue_bench.preload_finished(bus.pool, n, _PRELOAD_QUEUE)
    size_rows, sizes = await _sizes(settings, url)
    return url, rows + [(f"after preload: {k}", v) for k, v in size_rows], sizes


async def _ceiling_round(settings: Settings, url: str, shape: Shape, batch: int) -> dict[str, float]:
    async with Bus.connect(bench_settings(settings, url, shape), listen=False) as bus:
        await scratch.empty_tasks(bus.pool)
        await prefill(bus, shape.drain)
        run = await queue_bench.pgbench_drain(bus.pool, url, BENCH_QUEUE, shape.drain, shape.dequeuers, batch)
        await scratch.empty_tasks(bus.pool)
    return {"jobs_per_s": run.jobs_per_s, "jobs": float(run.done)}


async def _profile_rows(
    admin: Bus, source: str, results: dict[str, list[dict[str, float]]]
) -> list[tuple[str, str]]:
    """Where the time went: this process's CPU per job for each Python contestant, and the
    statements (or functions) that took the most server time over every round."""
    rows = [
        (f"{name} client CPU us/job", spread(res, "client_cpu_us_per_job").show(".0f"))
        for name, res in results.items()
        if not name.startswith("pgbench") and res and "client_cpu_us_per_job" in res[0]
    ]
    top = await queue_bench.profile_stop(admin.pool, source)
    if not source:
        rows.append(("server profile", "none: needs pg_stat_statements preloaded, or a superuser"))
    total = sum(t.total_ms for t in top) or 1.0
    for t in top:
        rows.append(
            (
                f"server {source} {t.total_ms / total:.0%}",
                f"{t.calls} calls, {t.total_ms / max(t.calls, 1) * 1000:.0f} us/call: {t.name[:90]}",
            )
        )
    return rows


async def _go(settings: Settings, opts: dict[str, Any]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    url = await bench_database(settings)
    rounds: int = opts["rounds"]
    drain: int | None = opts["drain"]
    if opts["ceiling"] and not drain:
        drain = 50_000
    mode = "latency" if opts["latency"] else "drain" if drain else "throughput"
    pgq_shape = dict(
        enqueuers=opts["enqueuers"],
        enqueue_batch=opts["enqueue_batch"],
        dequeuers=opts["dequeuers"],
        seconds=opts["seconds"],
        drain=drain or 0,
        workload=opts["workload"],
    )
    fixed = {"concurrency": opts["dequeue_batch"], "batch": opts["dequeue_batch"]}
    base = Shape(mode=mode, **pgq_shape, rate=opts["rate"])
    contestants: dict[str, Round] = {}
    if mode == "drain":
        contestants["bgagents"] = lambda: run_ours(settings, url, base)
        exact = Shape(**{**base.__dict__, "worker": {**fixed, "batch_max": opts["dequeue_batch"]}})
        contestants["bgagents-pgq-shape"] = lambda: run_ours(settings, url, exact)
    else:
        ours = Shape(**{**base.__dict__, "worker": fixed})
        contestants["bgagents"] = lambda: run_ours(settings, url, ours)
    if opts["compare"] == "pgqueuer" and mode != "latency":
        from agents.bench.pgqueuer import run_pgqueuer

        theirs = dict(pgq_shape, mode=mode, dequeue_batch=opts["dequeue_batch"])
        contestants["pgqueuer"] = lambda: run_pgqueuer(url, **theirs)
    if opts["ceiling"]:
        batch = settings.claim_batch_max
        contestants["pgbench-ceiling"] = lambda: _ceiling_round(settings, url, base, batch)

    click.echo(
        f"bench queue: {mode}, {rounds} alternating round(s) of {', '.join(contestants)}; "
        f"{opts['enqueuers']} enqueuer(s) x {opts['enqueue_batch']}, {opts['dequeuers']} dequeuer(s)"
        + (f", draining {drain} jobs" if drain else f", {opts['seconds']:.0f}s")
        + (f", {opts['rate']:.0f} tasks/s" if mode == "latency" else ""),
        err=True,
    )
    rows: list[tuple[str, str]] = []
    summary: dict[str, Any] = {"mode": mode, "rounds": rounds, "drain": drain, **opts}
    preload: int = opts["preload_finished"]
    if preload:
        full_url, size_rows, sizes = await _preloaded(settings, preload)
        rows += size_rows
        summary["sizes_after_preload"] = sizes
        kept = Shape(**{**base.__dict__, "keep_finished": True, "worker": fixed})
        contestants["bgagents-preloaded"] = lambda: run_ours(settings, full_url, kept)
    # The bench's own connections for the whole run: the profile, and a checkpoint before each round.
    async with Bus.connect(bench_settings(settings, url, base), listen=False) as admin:
        profiling = await queue_bench.profile_start(admin.pool) if opts["profile"] else ""
        checkpoints = await scratch.may_checkpoint(admin.pool)

        async def checkpoint() -> None:
            if checkpoints:
                await scratch.checkpoint(admin.pool)

        results = await alternate(rounds, contestants, before=checkpoint)
        if opts["profile"]:
            profile_rows = await _profile_rows(admin, profiling, results)
    for name, res in results.items():
        rows += _row(name, res)
        summary.update(_summary(name, res))
    if opts["profile"]:
        rows += profile_rows
    if mode == "latency":
        rows.append(("bgagents max ms", spread(results["bgagents"], "max_ms").show(".1f")))
        # The latency starts before the enqueue call, so it includes the enqueue's own commit.
        rows.append(("enqueue call p99 ms", spread(results["bgagents"], "enqueue_p99_ms").show(".1f")))
    if "pgqueuer" in results:
        for name in [n for n in results if n.startswith("bgagents")]:
            r = ratios(results[name], results["pgqueuer"])
            rows.append((f"ratio {name} / pgqueuer", r.show(".2f", "x")))
            summary[f"ratio_{name}"] = round(r.median, 2)
    if "pgbench-ceiling" in results:
        r = ratios(results["bgagents"], results["pgbench-ceiling"])
        rows.append(("bgagents / pgbench ceiling", f"{r.median:.0%} ({r.low:.0%}-{r.high:.0%})"))
        summary["ceiling_share"] = round(r.median, 3)
    if preload:
        for name in ("bgagents", "bgagents-preloaded"):
            rows.append((f"{name} claim p99 ms", spread(results[name], "claim_p99_ms").show(".2f")))
        rows += [(f"at the end: {k}", v) for k, v in (await _sizes(settings, full_url))[0]]
        for key in ("jobs_per_s", "claim_p99_ms"):
            r = ratios(results["bgagents-preloaded"], results["bgagents"], key)
            rows.append(
                (f"preloaded / empty {key}", f"{r.median - 1:+.0%} ({r.low - 1:+.0%} to {r.high - 1:+.0%})")
            )
            summary[f"preloaded_change_{key}"] = round(r.median - 1, 3)
    summary["rounds_figures"] = results
    return rows, summary


@bench.command("queue")
@click.option("--enqueuers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--enqueue-batch", default=10, show_default=True, type=click.IntRange(1, 10000))
@click.option("--dequeuers", default=5, show_default=True, type=click.IntRange(1, 64))
@click.option("--dequeue-batch", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--seconds", default=15.0, show_default=True, type=click.FloatRange(1))
@click.option("--drain", default=None, type=click.IntRange(1), help="Drain this many queued jobs.")
@click.option(
    "--rounds", default=3, show_default=True, type=click.IntRange(1, 20), help="Alternating rounds."
)
@click.option(
    "--compare",
    type=click.Choice(["pgqueuer"]),
    default=None,
    help="Run PGQueuer in the same shape in the same run.",
)
@click.option(
    "--workload",
    type=click.Choice(["async", "mixed"]),
    default="async",
    show_default=True,
    help="async: no-op async handlers; mixed: half sync (run in a thread), half async, "
    "as PGQueuer's own benchmark tool does.",
)
@click.option("--ceiling", is_flag=True, help="Also drain through pgbench (default --drain 50000).")
@click.option(
    "--preload-finished",
    default=0,
    type=click.IntRange(0, 100_000_000),
    help="Measure on an empty table, then with this many finished tasks retained.",
)
@click.option("--latency", is_flag=True, help="Enqueue-to-start latency at --rate tasks/s, idle workers.")
@click.option("--rate", default=100.0, show_default=True, type=click.FloatRange(1, 10000))
@click.option(
    "--hosts",
    default=0,
    type=click.IntRange(0, 16),
    help="Also run the dequeuers split over this many hosts (network namespaces, TCP; needs root).",
)
@click.option(
    "--profile",
    is_flag=True,
    help="Also print this process's CPU per job and the server's costliest statements "
    "(pg_stat_statements when preloaded, else function times; superuser).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on the last line.")
@click.pass_context
def bench_queue(ctx: click.Context, /, as_json: bool, **opts: Any) -> None:
    """Queue throughput (default), drain, ceiling, growth or latency, optionally against PGQueuer."""
    settings = settings_of(ctx)
    if opts["hosts"]:
        from agents.bench.hosts import bench_hosts

        rows, summary = asyncio.run(bench_hosts(settings, opts))
        emit(rows, summary, as_json)
        return
    rows, summary = asyncio.run(_go(settings, opts))
    emit(rows, summary, as_json)
