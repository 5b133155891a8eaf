"""What the queue benchmark does to PostgreSQL beside using the bus: the pgbench ceiling, a preload.

The ceiling (:func:`pgbench_drain`) calls the very functions a worker calls,
``bg.claim_tasks`` and ``bg.complete_tasks`` (``queue_bench_claim_ids`` and
``queue_bench_complete_ids`` in ``sql/queries/queue_bench.sql``), through
``pgbench`` (it ships with PostgreSQL; the embedded server's copy is used when
there is one): each client claims a batch, then completes it, over and over,
prepared once, with no Python in the loop. What our drain reaches as a share of
that rate is the cost of everything that isn't the database.

Everything here runs only in the scratch database (:mod:`bus.scratch`).
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bus import db
from bus.errors import BgError

__all__ = [
    "CeilingRun",
    "ServerTime",
    "counts",
    "forget_queue",
    "index_sizes",
    "pgbench_drain",
    "pgbench_path",
    "preload_finished",
    "profile_start",
    "profile_stop",
]


@dataclass(frozen=True)
class CeilingRun:
    """One pgbench drain: how many tasks it finished, and in how long."""

    done: int
    seconds: float

    @property
    def jobs_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


def pgbench_path() -> str:
    """The ``pgbench`` of the embedded server, else the one on ``PATH``."""
    try:
        from bus import embedded

        candidate = embedded.bin_dir() / "pgbench"
        if candidate.exists():
            return str(candidate)
    except (ImportError, KeyError, OSError):
        pass
    found = shutil.which("pgbench")
    if found is None:
        raise BgError(
            "the ceiling needs pgbench",
            hint="install the PostgreSQL client tools (Debian: postgresql-client)",
        )
    return found


def _as_pgbench(sql: str, names: dict[int, str]) -> str:
    """A named query with ``$n`` parameters turned into pgbench ``:variables``, on one line."""
    text = re.sub(r"\$(\d+)", lambda m: names[int(m.group(1))], sql.strip().rstrip(";"))
    return " ".join(text.split())


def drain_script() -> str:
    """One pgbench transaction: claim a batch as ``queue_claim`` does, then complete it."""
    claim = _as_pgbench(
        db.sql_text("queue_bench_claim_ids"), {1: ":queue", 2: ":batch", 3: ":worker", 4: ":lease"}
    )
    complete = _as_pgbench(db.sql_text("queue_bench_complete_ids"), {1: ":ids", 2: ":n", 3: ":worker"})
    return f"{claim} \\gset\n{complete};\n"


async def pgbench_drain(
    pool: db.Pool, url: str, queue: str, tasks: int, clients: int, batch: int
) -> CeilingRun:
    """Drain ``tasks`` queued tasks of ``queue`` (at ``url``) with ``clients`` pgbench clients
    claiming ``batch`` each; counts what they finished."""
    rounds = max(1, math.ceil(tasks / (clients * batch)))
    with tempfile.TemporaryDirectory(prefix="bgagents-pgbench-") as folder:
        script = Path(folder) / "drain.sql"
        script.write_text(drain_script())
        args = [
            pgbench_path(),
            "--no-vacuum",
            "--protocol=prepared",
            f"--client={clients}",
            f"--jobs={min(clients, 2)}",
            f"--transactions={rounds}",
            f"--file={script}",
            f"--define=queue={queue}",
            f"--define=batch={batch}",
            "--define=worker=pgbench",
            "--define=lease=30",
            url,
        ]
        began = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
        seconds = time.perf_counter() - began
    if process.returncode != 0:
        raise BgError(
            f"pgbench failed ({process.returncode}): {(err or out).decode(errors='replace')[-500:]}"
        )
    return CeilingRun(done=(await counts(pool, queue))["done"], seconds=seconds)


async def preload_finished(pool: db.Pool, n: int, queue: str) -> int:
    """Add ``n`` finished tasks to ``queue`` (in chunks), then vacuum and analyze the table."""
    added = 0
    while added < n:
        added += int(await db.call(pool, "queue_bench_preload_finished", min(100_000, n - added), queue))
    await db.call(pool, "queue_bench_vacuum")
    return added


async def vacuum(pool: db.Pool) -> None:
    """Vacuum and analyze ``bg.tasks``."""
    await db.call(pool, "queue_bench_vacuum")


async def forget_queue(pool: db.Pool, queue: str) -> None:
    """Delete every task of ``queue``, then vacuum, leaving the other queues' tasks."""
    await db.call(pool, "queue_bench_forget_queue", queue)
    await db.call(pool, "queue_bench_vacuum")


async def counts(pool: db.Pool, queue: str) -> dict[str, int]:
    """Tasks of ``queue`` that are done, queued and running."""
    row = await db.call(pool, "queue_bench_counts", queue)
    return {k: int(v) for k, v in dict(row).items()}


async def index_sizes(pool: db.Pool) -> dict[str, int]:
    """Each index of ``bg.tasks`` with its size in bytes."""
    return {r["name"]: int(r["bytes"]) for r in await db.call(pool, "queue_bench_index_sizes")}


@dataclass(frozen=True)
class ServerTime:
    """Server time spent in one statement (pg_stat_statements) or one function (track_functions)."""

    name: str
    calls: int
    total_ms: float


async def profile_start(pool: db.Pool) -> str:
    """Start gathering server times in the scratch database: ``"pg_stat_statements"`` when it is
    preloaded, else ``"track_functions"`` (superusers only), else ``""`` (nothing to gather)."""
    if await db.call(pool, "queue_bench_statements_loaded"):
        await db.call(pool, "queue_bench_statements_install")
        await db.call(pool, "queue_bench_statements_reset")
        return "pg_stat_statements"
    if await db.call(pool, "queue_bench_is_superuser"):
        await db.call(pool, "queue_bench_functions_track")
        await db.call(pool, "queue_bench_functions_reset")
        return "track_functions"
    return ""


async def profile_stop(pool: db.Pool, source: str, limit: int = 10) -> list[ServerTime]:
    """The ``limit`` statements or functions that took the most server time since
    :func:`profile_start`; stops timing functions."""
    if source == "pg_stat_statements":
        rows = await db.call(pool, "queue_bench_statements_top", limit)
    elif source == "track_functions":
        # The rounds' backends report their function times as they exit, a moment after
        # their pools close; nothing says when they are done.
        await asyncio.sleep(0.6)
        rows = await db.call(pool, "queue_bench_functions_top", limit)
        await db.call(pool, "queue_bench_functions_untrack")
    else:
        return []
    return [ServerTime(" ".join(r["name"].split()), int(r["calls"]), float(r["total_ms"])) for r in rows]
