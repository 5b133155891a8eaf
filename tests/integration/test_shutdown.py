"""Stopping is prompt: SIGINT ends `bgagents up` and `bgagents web` within 5 s, whatever is open or busy.

With SSE clients connected (one on a silent channel) and others gone, with the
model weights' download hanging on a fresh system, with an agent busy in a
thread: the process exits within :data:`STOP_WITHIN` seconds, and the
``bgagents_sse_clients`` gauge matches the connected clients at every step.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import psutil
import pytest

from agents.ai import knowledge
from agents.ai.embedders import HashingEmbedder
from agents.builtin.ai_help import FIRST_INGEST_MARKER, AIHelpAgent
from agents.runtime.agent import Agent
from bus import ai
from bus import knowledge as store
from bus.client import Bus
from bus.config import Settings
from tests.conftest import BGAGENTS
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
STOP_WITHIN = 5.0
"""Seconds from SIGINT to the process's exit."""

STARTUP = 30.0

pytestmark = pytest.mark.timeout(120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """One ``bgagents`` process of a test, logging to a file; killed at the end if still running."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*BGAGENTS, *args], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"exited early with {self.proc.returncode}:\n{self.output()}")
        return True

    async def interrupt(self) -> float:
        """SIGINT; wait (at most STOP_WITHIN) for a clean exit; returns how long it took."""
        began = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        await eventually(
            lambda: self.proc.poll() is not None,
            timeout=STOP_WITHIN,
            what=f"pid {self.proc.pid} exits after SIGINT",
            interval=0.05,
            detail=self.output,
        )
        took = time.monotonic() - began
        assert self.proc.returncode == 0, self.output()
        assert "Traceback" not in self.output(), self.output()
        return took

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def env(db_url: str, cli_env: dict[str, str]) -> dict[str, str]:
    return {
        **cli_env,
        "DATABASE_URL": db_url,
        "BGAGENTS_PORT": str(_free_port()),
        "BGAGENTS_POOL_MIN": "1",
        "BGAGENTS_EMBEDDER": "hashing",
    }


@pytest.fixture
def start(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def run(*args: str, extra: dict[str, str] | None = None) -> Process:
        process = Process({**env, **(extra or {})}, tmp_path / f"{len(started)}-{args[0]}.log", *args)
        started.append(process)
        return process

    try:
        yield run
    finally:
        for process in started:
            process.kill()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as s:
        yield s


async def _gauge(session: aiohttp.ClientSession, base: str) -> int:
    async with session.get(f"{base}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith("bgagents_sse_clients "):
                return int(float(line.split()[1]))
    raise AssertionError("no bgagents_sse_clients in /metrics")


async def _gauge_is(session: aiohttp.ClientSession, base: str, n: int) -> None:
    async def matches() -> bool:
        return await _gauge(session, base) == n

    await eventually(matches, timeout=5, what=f"bgagents_sse_clients == {n}", interval=0.1)


async def _web_up(session: aiohttp.ClientSession, base: str, process: Process) -> None:
    async def answers() -> bool:
        process.alive()
        try:
            async with session.get(f"{base}/metrics") as resp:
                return resp.status == 200
        except aiohttp.ClientConnectionError:
            return False

    await eventually(
        answers, timeout=STARTUP, what="the web answering /metrics", interval=0.2, detail=process.output
    )


async def _open_stream(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    """An SSE stream, once its ``hello`` arrived (from then on the server counts it)."""
    resp = await session.get(url)
    assert resp.status == 200, await resp.text()
    while not (await asyncio.wait_for(resp.content.readline(), 10)).startswith(b"event: hello"):
        pass
    return resp


async def _clients_come_and_go_then_sigint(
    session: aiohttp.ClientSession, base: str, process: Process
) -> None:
    """Connect four streams (two on a silent channel), drop two, then SIGINT with two still open."""
    urls = [
        f"{base}/api/events?channels=nothing-here",  # silent: nothing is ever written to it
        f"{base}/api/events?coalesce=1",  # the dashboard's stream
        f"{base}/api/events",
        f"{base}/api/events?channels=nothing-here",
    ]
    streams = []
    assert await _gauge(session, base) == 0
    for n, url in enumerate(urls, start=1):
        streams.append(await _open_stream(session, url))
        assert await _gauge(session, base) == n
    for gone in (streams.pop(0), streams.pop(0)):  # the silent one and the dashboard leave
        gone.close()
    await _gauge_is(session, base, 2)
    took = await process.interrupt()
    assert took < STOP_WITHIN
    for stream in streams:  # the ones still connected saw their stream end
        assert await asyncio.wait_for(stream.content.read(), 1) is not None
        stream.close()


async def test_up_stops_within_5s_with_sse_clients_connected_and_gone(
    start: Callable[..., Process],
    env: dict[str, str],
    conn: asyncpg.Connection,
    session: aiohttp.ClientSession,
) -> None:
    process = start("up")
    base = f"http://127.0.0.1:{env['BGAGENTS_PORT']}"
    await _web_up(session, base, process)

    async def agents_running() -> bool:
        process.alive()
        count = await conn.fetchval(
            "select count(*) from bg.agents where status = 'running' and pid = $1", process.proc.pid
        )
        return bool(count == 5)

    await eventually(agents_running, timeout=STARTUP, what="every built-in agent running", interval=0.2)
    await _clients_come_and_go_then_sigint(session, base, process)
    statuses = await conn.fetch("select status from bg.agents where pid = $1", process.proc.pid)
    assert {r["status"] for r in statuses} == {"stopped"}


async def test_web_stops_within_5s_with_sse_clients_connected_and_gone(
    start: Callable[..., Process], env: dict[str, str], session: aiohttp.ClientSession
) -> None:
    process = start("web")
    base = f"http://127.0.0.1:{env['BGAGENTS_PORT']}"
    await _web_up(session, base, process)
    await _clients_come_and_go_then_sigint(session, base, process)


# --- a slow first start --------------------------------------------------------------------------


@pytest.fixture
def hanging_index() -> Iterator[str]:
    """A package index that accepts connections and never answers (pip waits on it)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/simple/"


def _pip_of(process: Process) -> psutil.Process | None:
    """The ``pip download`` child of ``process``, if it runs."""
    process.alive()
    for child in psutil.Process(process.proc.pid).children(recursive=True):
        try:
            if "download" in child.cmdline() and "pip" in child.cmdline():
                return child
        except psutil.NoSuchProcess:
            continue
    return None


async def test_sigint_during_the_first_model_download_stops_within_5s_and_the_next_start_resumes(
    start: Callable[..., Process], conn: asyncpg.Connection, tmp_path: Path, hanging_index: str
) -> None:
    if not await ai.knowledge_ready(conn):
        pytest.skip("pgvector is not installed on this server, so ai-help fetches no model")
    data = tmp_path / "fresh-data"
    fresh = {
        "BGAGENTS_DATA_DIR": str(data),
        "BGAGENTS_EMBEDDER": "local",
        "PIP_INDEX_URL": hanging_index,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_CACHE_DIR": "1",
    }
    models = data / "models" / "all-MiniLM-L6-v2"
    for attempt in range(2):  # the second start fetches again: nothing was left half-done
        process = start("up", "--no-web", extra=fresh)
        pip = await eventually(
            lambda p=process: _pip_of(p), timeout=STARTUP, what="ai-help's pip download running", interval=0.2
        )
        await process.interrupt()
        assert not pip.is_running(), f"start {attempt + 1}: pip outlived the stop"
        assert not (models / "model.safetensors").exists()
        assert not list(models.glob(".fetch-*")), "the download's temporary folder was left behind"
        assert (data / "first-ingest.pending").exists()  # the first ingest is still to do


async def test_a_first_ingest_stopped_part_way_resumes_on_the_next_start(
    db_url: str, settings_for: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # ai-help learns the README and docs/ of the folder it runs from
    settings = settings_for(db_url, BGAGENTS_EMBEDDER="hashing", BGAGENTS_DATA_DIR=str(tmp_path))
    async with Bus.connect(settings, listen=False) as bus:
        if not await ai.knowledge_ready(bus.pool):
            pytest.skip("pgvector is not installed on this server, so ai-help ingests nothing")
        # What a stop after the first file leaves: the README stored, the marker still there.
        await knowledge.ingest(bus.pool, HashingEmbedder(), [ROOT / "README.md"])
        marker = tmp_path / FIRST_INGEST_MARKER
        marker.write_text("README.md and docs/*.md\n")
        agent = AIHelpAgent(bus)
        await agent.setup()
        await agent.run_once()
        docs = sorted((ROOT / "docs").glob("*.md"))
        assert docs
        assert await store.documents_count(bus.pool) == 1 + len(docs)
        assert not marker.exists()


# --- an agent busy in a thread ---------------------------------------------------------------


class BusyInThread(Agent):
    """Its ``run_once`` sleeps a minute in a thread (like an embedding: it can't be interrupted)."""

    name = "busy-in-thread"

    @dataclass
    class Config(Agent.Config):
        interval: float = 60.0

    async def run_once(self) -> None:
        Path(os.environ["BUSY_MARKER"]).touch()  # noqa: ASYNC240 - a marker for the test, at once
        await asyncio.to_thread(time.sleep, 60)


async def test_an_agent_busy_in_a_thread_stops_within_5s(
    start: Callable[..., Process], conn: asyncpg.Connection, tmp_path: Path
) -> None:
    marker = tmp_path / "busy"
    process = start("run", f"{__name__}:BusyInThread", extra={"BUSY_MARKER": str(marker)})
    await eventually(
        lambda: process.alive() and marker.exists(), timeout=STARTUP, what="run_once busy", interval=0.1
    )
    await process.interrupt()
    assert await conn.fetchval("select status from bg.agents where name = 'busy-in-thread'") == "stopped"
