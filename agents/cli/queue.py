"""Queue and event commands: ``worker``, ``enqueue``, ``publish``, ``tasks``, ``schedule``."""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

import click

from agents.cli.root import BIGINT, INT4, FiniteFloat, clean, with_bus
from agents.runtime.loader import load_object
from agents.runtime.signals import on_stop_signal
from bus import maintenance, schedules
from bus.client import Bus
from bus.errors import BgError, InvalidArgument
from bus.queue import STATUSES
from bus.worker import Handler, WorkerConfig

T = TypeVar("T")

MAX_JSON_DEPTH = 64
"""How deeply a payload given on the command line may nest."""

YEAR = 365 * 86400.0


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _json_arg(name: str, raw: str | None, *, object_only: bool = False) -> Any:
    """``raw`` parsed as JSON (None: ``{}``), nesting at most :data:`MAX_JSON_DEPTH` levels."""
    if raw is None:
        return {}
    hint = "quote it, e.g. '{\"n\": 1}'"
    try:
        value = json.loads(raw)
    except RecursionError:
        raise InvalidArgument(f"{name} nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise InvalidArgument(f"{name} is not valid JSON: {exc}", hint=hint) from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise InvalidArgument(f"{name} nests deeper than {MAX_JSON_DEPTH} levels")
    if object_only and not isinstance(value, dict):
        raise InvalidArgument(f"{name} must be a JSON object, got {type(value).__name__}", hint=hint)
    return value


def load_handler(spec: str) -> Handler:
    """Import ``package.module:function`` for ``--handler``."""
    handler = load_object(spec, what="--handler", example="agents.demo:echo")
    if not callable(handler):
        raise InvalidArgument(f"{spec} is not a function", hint="give package.module:function")
    return handler  # type: ignore[no-any-return]


@click.command()
@click.option("--queue", "-q", required=True, help="Queue to work on.")
@click.option("--handler", "handler_spec", required=True, help="package.module:function to run.")
@click.option("--concurrency", "-c", default=10, show_default=True, type=click.IntRange(1, 10000))
@click.option(
    "--batch", default=10, show_default=True, type=click.IntRange(1, 1000), help="Tasks claimed per query."
)
@click.option(
    "--lease",
    default=30.0,
    show_default=True,
    type=FiniteFloat(1, 7 * 86400),
    help="Seconds a claim lasts unless renewed.",
)
@click.pass_context
def worker(
    ctx: click.Context, queue: str, handler_spec: str, concurrency: int, batch: int, lease: float
) -> None:
    """Run a worker for QUEUE with your handler until Ctrl-C or SIGTERM."""
    handler = load_handler(handler_spec)

    async def work(bus: Bus) -> None:
        w = bus.worker(queue, handler, WorkerConfig(concurrency=concurrency, batch=batch, lease=lease))
        on_stop_signal(w.stop)
        background = [
            asyncio.create_task(schedules.run_scheduler(bus.pool)),
            asyncio.create_task(maintenance.run_forever(bus.pool, bus.settings)),
        ]
        click.echo(
            f"worker {w.worker_id} on queue {queue!r} (concurrency {concurrency}); Ctrl-C stops it", err=True
        )
        try:
            await w.run()
        finally:
            for job in background:
                job.cancel()
        click.echo(f"worker stopped after {w.processed} task(s)", err=True)

    with_bus(ctx, work, listen=True)


@click.command()
@click.argument("queue")
@click.argument("payload", required=False)
@click.option("--priority", default=0, type=INT4)
@click.option("--delay", default=None, type=FiniteFloat(0, 10 * YEAR), help="Seconds before it may run.")
@click.option("--dedupe-key", default=None)
@click.option("--max-attempts", default=5, type=click.IntRange(1, 2**31 - 1))
@click.option("--timeout", default=None, type=FiniteFloat(0.001, YEAR), help="Seconds a run may take.")
@click.option(
    "--wait", "wait_s", default=None, type=FiniteFloat(0, YEAR), help="Wait this long for the result."
)
@click.pass_context
def enqueue(
    ctx: click.Context,
    queue: str,
    payload: str | None,
    priority: int,
    delay: float | None,
    dedupe_key: str | None,
    max_attempts: int,
    timeout: float | None,
    wait_s: float | None,
) -> None:
    """Add a task to QUEUE with a JSON PAYLOAD; prints its id (or its result with --wait)."""
    data = _json_arg("PAYLOAD", payload)

    async def work(bus: Bus) -> None:
        task_id = await bus.queue.enqueue(
            queue,
            data,
            priority=priority,
            delay=delay,
            dedupe_key=dedupe_key,
            max_attempts=max_attempts,
            timeout=timeout,
        )
        click.echo(task_id)
        if wait_s is not None:
            click.echo(json.dumps(await bus.queue.result(task_id, timeout=wait_s)))

    with_bus(ctx, work)


@click.command()
@click.argument("channel")
@click.argument("payload", required=False)
@click.pass_context
def publish(ctx: click.Context, channel: str, payload: str | None) -> None:
    """Publish an event with a JSON PAYLOAD on CHANNEL; prints its id."""
    data = _json_arg("PAYLOAD", payload)
    click.echo(with_bus(ctx, lambda bus: bus.publish(channel, data, source="bgagents")))


status_option = click.option("--status", type=click.Choice(STATUSES), default=None)


@click.group(invoke_without_command=True)
@click.option("--queue", "-q", default=None)
@status_option
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@click.pass_context
def tasks(ctx: click.Context, queue: str | None, status: str | None, limit: int) -> None:
    """List tasks by queue and status (subcommands: show, retry, cancel)."""
    if ctx.invoked_subcommand is not None:
        return

    async def work(bus: Bus) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return await bus.queue.stats(), await bus.queue.list_tasks(queue, status, limit)

    stats, rows = with_bus(ctx, work)
    click.echo(f"{'queue':<20} {'status':<10} {'tasks':>8}  oldest ready")
    for s in stats:
        if queue and s["queue"] != queue:
            continue
        age = "" if s["oldest_ready_age_s"] is None else f"{s['oldest_ready_age_s']:.1f}s"
        click.echo(f"{clean(s['queue']):<20} {s['status']:<10} {s['tasks']:>8}  {age}")
    click.echo()
    click.echo(f"{'id':>8} {'queue':<16} {'status':<10} {'try':>5}  created              error")
    for r in rows:
        error = clean((r["last_error"] or "").splitlines()[0][:50], one_line=True) if r["last_error"] else ""
        click.echo(
            f"{r['id']:>8} {clean(r['queue']):<16} {r['status']:<10} "
            f"{r['attempts']:>2}/{r['max_attempts']:<2}  "
            f"{r['created_at']:%Y-%m-%d %H:%M:%S}  {error}"
        )


@tasks.command("show")
@click.argument("task_id", type=BIGINT)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def tasks_show(ctx: click.Context, task_id: int, as_json: bool) -> None:
    """Show one task, with its traceback."""
    row = with_bus(ctx, lambda bus: bus.queue.get(task_id))
    if as_json:
        click.echo(json.dumps(row, default=str))
        return
    for key, value in row.items():
        if key != "last_traceback":
            shown = json.dumps(value, default=str) if key in ("payload", "result") else value
            click.echo(f"{key:<16} {clean(shown)}")
    if row["last_traceback"]:
        click.echo("\n" + clean(row["last_traceback"]))


def _one_or_all(task_id: int | None, all_: bool) -> None:
    if (task_id is None) == (not all_):
        raise InvalidArgument("give a TASK_ID or --all (with --queue/--status filters), not both")


@tasks.command("retry")
@click.argument("task_id", type=BIGINT, required=False)
@click.option("--all", "all_", is_flag=True, help="Every task matching the filters.")
@click.option("--queue", "-q", default=None)
@click.option("--status", type=click.Choice(["failed", "cancelled"]), default="failed", show_default=True)
@click.pass_context
def tasks_retry(ctx: click.Context, task_id: int | None, all_: bool, queue: str | None, status: str) -> None:
    """Put a failed (or cancelled) task, or all that match, back in the queue."""
    _one_or_all(task_id, all_)
    if task_id is not None:
        if not with_bus(ctx, lambda bus: bus.queue.retry(task_id)):
            raise BgError(f"task {task_id} is not failed or cancelled (or does not exist)")
        click.echo(f"task {task_id} re-queued")
        return
    count = with_bus(ctx, lambda bus: bus.queue.retry_all(queue, status))
    click.echo(f"{count} task(s) re-queued")


@tasks.command("cancel")
@click.argument("task_id", type=BIGINT, required=False)
@click.option("--all", "all_", is_flag=True, help="Every task matching the filters.")
@click.option("--queue", "-q", default=None)
@click.option("--status", type=click.Choice(["queued", "running"]), default="queued", show_default=True)
@click.pass_context
def tasks_cancel(ctx: click.Context, task_id: int | None, all_: bool, queue: str | None, status: str) -> None:
    """Cancel a task (running ones are asked to stop), or all that match."""
    _one_or_all(task_id, all_)
    if task_id is not None:
        outcome = with_bus(ctx, lambda bus: bus.queue.cancel(task_id))
        if outcome is None:
            raise BgError(f"no task {task_id}")
        click.echo(f"task {task_id}: {outcome}")
        return
    count = with_bus(ctx, lambda bus: bus.queue.cancel_all(queue, status))
    click.echo(f"{count} task(s) cancelled or asked to stop")


@click.group()
def schedule() -> None:
    """Cron-style periodic tasks (UTC)."""


@schedule.command("add")
@click.argument("name")
@click.argument("cron")
@click.option("--queue", "-q", required=True)
@click.option("--payload", default=None, help="JSON payload of each task (an object).")
@click.option("--priority", default=0, type=INT4)
@click.pass_context
def schedule_add(
    ctx: click.Context, name: str, cron: str, queue: str, payload: str | None, priority: int
) -> None:
    """Add or replace schedule NAME, e.g. `bgagents schedule add nightly '0 3 * * *' -q reports`."""
    data = _json_arg("--payload", payload, object_only=True)
    first = with_bus(ctx, lambda bus: schedules.add(bus.pool, name, cron, queue, data, priority))
    click.echo(f"schedule {name!r}: first run {first:%Y-%m-%d %H:%M} UTC")


@schedule.command("list")
@click.pass_context
def schedule_list(ctx: click.Context) -> None:
    """List schedules with their next run."""
    rows = with_bus(ctx, lambda bus: schedules.list_all(bus.pool))
    click.echo(f"{'name':<24} {'cron':<16} {'queue':<16} next run (UTC)")
    for r in rows:
        click.echo(
            f"{clean(r['name']):<24} {clean(r['cron']):<16} {clean(r['queue']):<16} "
            f"{r['next_run']:%Y-%m-%d %H:%M}"
            f"{'' if r['enabled'] else '  (disabled)'}"
        )


@schedule.command("remove")
@click.argument("name")
@click.pass_context
def schedule_remove(ctx: click.Context, name: str) -> None:
    """Remove schedule NAME."""
    if not with_bus(ctx, lambda bus: schedules.remove(bus.pool, name)):
        raise BgError(f"no schedule {name!r}", hint="see `bgagents schedule list`")
    click.echo(f"schedule {name!r} removed")


COMMANDS = (worker, enqueue, publish, tasks, schedule)
