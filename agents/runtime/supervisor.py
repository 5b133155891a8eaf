"""Running agents: one ``AgentRunner`` per agent instance, a ``Supervisor`` per process.

The runner registers the instance in ``bg.agents``, sends heartbeats (with the
process's CPU and RSS), calls ``run_once`` on its interval, runs its queue
workers, and obeys commands from the ``commands`` channel: pause, resume, stop
and restart. The supervisor runs several runners in one process, restarts a
crashed one with exponential backoff, and on SIGTERM/SIGINT stops them all
gracefully within :data:`STOP_WITHIN` seconds: a ``run_once`` still busy after
:data:`RUN_ONCE_GRACE` is cancelled (its work resumes on the next start),
in-flight tasks finish within :data:`TASK_GRACE` or are released, and each
instance marks itself ``stopped``. Work in threads (``asyncio.to_thread``: an
embedding, a sync handler) can't be interrupted, so the supervisor's loop runs
it on :class:`DaemonExecutor`, whose threads never hold up the process's exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from agents.runtime import logs
from agents.runtime.agent import Agent
from agents.runtime.signals import on_stop_signal
from bus import agents as instances
from bus.client import Bus
from bus.errors import DatabaseError
from bus.waiting import wait_event
from bus.worker import Worker

logger = logging.getLogger(__name__)

STOP_WITHIN = 5.0
"""Seconds a stop may take, all agents together (the graces below fit in it)."""

RUN_ONCE_GRACE = 1.0
"""Seconds a busy ``run_once`` may go on after a stop before it is cancelled."""

TASK_GRACE = 2.0
"""Seconds in-flight queue tasks get after a stop before they are released."""

EXECUTOR_SHUTDOWN_WAIT = 0.5
"""Seconds the loop's exit waits for busy threads before leaving them behind."""


class DaemonExecutor(concurrent.futures.ThreadPoolExecutor):
    """A thread pool of daemon threads: a thread still busy at exit never holds the process.

    ``ThreadPoolExecutor`` joins its threads at interpreter exit, and
    ``asyncio.run`` waits for the default executor without a timeout on 3.11,
    so one long embedding would delay a stop by its whole length. Here
    :meth:`shutdown` waits at most :data:`EXECUTOR_SHUTDOWN_WAIT` seconds, and
    the threads are daemons: what they were doing is abandoned. (It subclasses
    ``ThreadPoolExecutor`` only because asyncio's default executor must be one;
    :meth:`submit` and :meth:`shutdown` are its own.)
    """

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        super().__init__(self.max_workers, thread_name_prefix="agents-daemon")  # starts no thread
        self._work: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._daemons: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._shut = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Run ``fn(*args, **kwargs)`` in a daemon thread."""
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            self._work.put((future, lambda: fn(*args, **kwargs)))
            if not self._idle.acquire(blocking=False) and len(self._daemons) < self.max_workers:
                thread = threading.Thread(
                    target=self._serve, name=f"agents-daemon-{len(self._daemons)}", daemon=True
                )
                thread.start()
                self._daemons.append(thread)
            return future

    def _serve(self) -> None:
        while (item := self._work.get()) is not None:
            future, call = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as exc:  # handed to the awaiting coroutine
                    future.set_exception(exc)
            del item, future, call
            self._idle.release()
        self._work.put(None)  # wake the next thread: all of them stop

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; with ``wait``, give busy threads :data:`EXECUTOR_SHUTDOWN_WAIT` seconds."""
        with self._lock:
            self._shut = True
        self._work.put(None)
        if wait:
            deadline = time.monotonic() + EXECUTOR_SHUTDOWN_WAIT
            for thread in self._daemons:
                thread.join(max(0.0, deadline - time.monotonic()))


class _Restart(Exception):
    """A restart command: the supervisor starts the agent again at once."""


class AgentRunner:
    """Runs one agent instance until it is stopped."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.bus: Bus = agent.bus
        self.host = socket.gethostname()
        self.instance_id = f"{agent.name}@{self.host}:{os.getpid()}:{secrets.token_hex(3)}"
        agent.instance_id = self.instance_id
        self.status = "starting"
        self._note_sent: str | None = None
        self.seq = 0
        self._stop = asyncio.Event()
        self._resume = asyncio.Event()
        self._resume.set()
        self._restart = False
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # prime: the first call always says 0.0
        self.workers: list[Worker] = []
        self.started = asyncio.Event()

    async def _set_status(self, status: str) -> None:
        self.status = status
        self._note_sent = self.agent.status_note()
        await instances.set_status(self.bus.pool, self.instance_id, status, self._note_sent)

    async def _register(self) -> None:
        await instances.register(
            self.bus.pool,
            self.instance_id,
            self.agent.name,
            self.agent.kind,
            self.host,
            os.getpid(),
            self.agent.version,
            self.agent.config.heartbeat_interval,
        )

    async def run(self) -> None:
        """Register, run until stopped, and deregister cleanly."""
        config = self.agent.config
        await self._register()
        self._cursor = await self.bus.events.current_cursor()
        background: list[asyncio.Task[Any]] = []
        try:
            await self.agent.setup()
            for queue, method in self.agent.queues.items():
                worker = self.bus.worker(queue, getattr(self.agent, method), concurrency=config.concurrency)
                self.workers.append(worker)
                background.append(asyncio.create_task(worker.run(), name=f"{self.agent.name}-{queue}"))
            background.append(asyncio.create_task(self._heartbeats(), name=f"{self.agent.name}-beat"))
            background.append(asyncio.create_task(self._commands(), name=f"{self.agent.name}-cmd"))
            await self._set_status("running")
            logger.info("%s started as %s", self.agent.name, self.instance_id)
            self.started.set()
            await self._loop(background)
        finally:
            with contextlib.suppress(Exception):
                await self._set_status("stopping")
            for worker in self.workers:
                worker.stop(grace=TASK_GRACE)
            for task in background:
                if task.get_name().endswith(("-beat", "-cmd")):
                    task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.agent.teardown()
            with contextlib.suppress(Exception):
                await self._set_status("stopped")
        if self._restart:
            raise _Restart()

    async def _loop(self, background: list[asyncio.Task[Any]]) -> None:
        interval = self.agent.config.interval
        while not self._stop.is_set():
            for task in background:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            await self._resume.wait()
            if self._stop.is_set():
                break
            began = time.monotonic()
            await self._run_once()
            pause = max(0.0, interval - (time.monotonic() - began))
            await wait_event(self._stop, pause)

    async def _run_once(self) -> None:
        """``run_once``, cancelled if it is still busy :data:`RUN_ONCE_GRACE` seconds after a stop."""
        work = asyncio.ensure_future(self.agent.run_once())
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                await asyncio.wait({work}, timeout=RUN_ONCE_GRACE)
            if not work.done():
                self.agent.log.info("stopping: abandoning run_once (it resumes on the next start)")
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
                return
        finally:
            stopping.cancel()
            if not work.done():  # we were cancelled ourselves
                work.cancel()
        work.result()  # a crash propagates to the supervisor

    def stop(self) -> None:
        """Stop gracefully (idempotent); the workers start draining at once, beside run_once's grace."""
        self._stop.set()
        self._resume.set()
        for worker in self.workers:
            worker.stop(grace=TASK_GRACE)

    async def _heartbeats(self) -> None:
        while True:
            self.seq += 1
            cpu = self._process.cpu_percent(None)
            rss = self._process.memory_info().rss
            try:
                desired = await instances.beat(self.bus.pool, self.instance_id, self.seq, cpu, rss)
                if desired is None:  # deregistered while we were away: register again
                    await self._register()
                    await self._set_status("paused" if not self._resume.is_set() else "running")
                else:
                    await self._obey(desired)
                    if self.agent.status_note() != self._note_sent:  # e.g. "backing off ..."
                        await self._set_status(self.status)
            except DatabaseError as exc:
                logger.warning("%s: heartbeat failed: %s", self.agent.name, exc)
            await asyncio.sleep(self.agent.config.heartbeat_interval)

    async def _commands(self) -> None:
        """Follow the durable ``commands`` channel; heartbeats re-check ``desired`` too."""
        async for event in self.bus.subscribe(["commands"], after=self._cursor, poll_interval=1.0):
            command = event.payload
            if command.get("name") != self.agent.name:
                continue
            await self._obey(
                {"pause": "paused", "resume": "running", "stop": "stopped", "restart": "restart"}[
                    command["command"]
                ]
            )

    async def _obey(self, desired: str) -> None:
        if desired == "paused" and self.status == "running":
            self._resume.clear()
            for worker in self.workers:
                worker.pause()
            await self._set_status("paused")
            self.agent.log.info("paused")
        elif desired == "running" and self.status == "paused":
            self._resume.set()
            for worker in self.workers:
                worker.resume()
            await self._set_status("running")
            self.agent.log.info("resumed")
        elif desired == "stopped":
            self.stop()
        elif desired == "restart":
            self._restart = True
            self.stop()


class Supervisor:
    """Runs agents in one process and restarts a crashed one with backoff."""

    def __init__(self, bus: Bus, agents: list[Agent], *, max_backoff: float = 60.0) -> None:
        self.bus = bus
        self.agents = agents
        self.max_backoff = max_backoff
        self.runners: dict[str, AgentRunner] = {}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        for runner in self.runners.values():
            runner.stop()

    def install_signal_handlers(self) -> None:
        on_stop_signal(self.stop)

    async def run(self) -> None:
        """Run every agent until :meth:`stop`; threads run on a :class:`DaemonExecutor`."""
        asyncio.get_running_loop().set_default_executor(DaemonExecutor())
        await asyncio.gather(*(self._supervise(agent) for agent in self.agents))

    async def _supervise(self, agent: Agent) -> None:
        # Its own asyncio task: every record its runner and workers log is this agent's
        # (the NAME.log of agents/runtime/logs.py).
        logs.current_agent.set(agent.name)
        backoff = 1.0
        while not self._stopping.is_set():
            runner = AgentRunner(agent)
            self.runners[agent.name] = runner
            began = time.monotonic()
            try:
                await runner.run()
                return  # stopped on purpose
            except _Restart:
                logger.info("%s: restarting on command", agent.name)
                continue
            except Exception:
                logger.exception("%s crashed; restarting in %.0fs", agent.name, backoff)
            if time.monotonic() - began > 60:
                backoff = 1.0  # it ran a good while: start the backoff over
            await wait_event(self._stopping, backoff)
            backoff = min(backoff * 2, self.max_backoff)
