"""The soak benchmark's child processes (workers, web servers) and its memory sampler.

Each child has a role (``worker-0``, ``web-steady``); a fault kills a role's
process with SIGKILL and starts a new one in its place. A child that exits on
its own is restarted too, and counted, since nothing in a soak should crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
import psutil

logger = logging.getLogger(__name__)

MB = 1024 * 1024
HARNESS = "soak (this process)"
"""The memory series of the soak process itself."""


@dataclass
class Child:
    """One role's current process."""

    role: str
    argv: list[str]
    env: dict[str, str]
    popen: subprocess.Popen[bytes]
    log: IO[bytes]
    generation: int = 1

    @property
    def label(self) -> str:
        return f"{self.role}#{self.generation} (pid {self.popen.pid})"


@dataclass
class Children:
    """The soak's child processes by role, with their logs in ``log_dir``."""

    log_dir: Path
    env: Mapping[str, str]
    children: dict[str, Child] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)

    def start(self, role: str, args: list[str], env: Mapping[str, str] | None = None) -> Child:
        """Start ``bgagents ARGS`` as ``role``."""
        child_env = {**self.env, **(env or {})}
        argv = [sys.executable, "-m", "agents.cli.main", *args]
        generation = self.children[role].generation + 1 if role in self.children else 1
        log = (self.log_dir / f"{role}.log").open("ab")
        popen = subprocess.Popen(argv, env=child_env, stdout=log, stderr=subprocess.STDOUT)
        child = Child(role, argv, child_env, popen, log, generation)
        self.children[role] = child
        return child

    def _respawn(self, child: Child) -> Child:
        child.log.close()
        args = child.argv[3:]
        return self.start(child.role, args, child.env)

    def kill(self, role: str) -> Child:
        """SIGKILL ``role``'s process, wait for it, and start a new one."""
        child = self.children[role]
        child.popen.send_signal(signal.SIGKILL)
        child.popen.wait()
        return self._respawn(child)

    def check(self) -> list[str]:
        """Restart every child that exited on its own; the labels of those that did."""
        exited = []
        for child in list(self.children.values()):
            if child.popen.poll() is not None:
                exited.append(f"{child.label} exited with {child.popen.returncode}")
                self._respawn(child)
        self.crashes.extend(exited)
        return exited

    def stop_all(self, grace: float = 15.0) -> None:
        """SIGTERM every child, then SIGKILL those still running after ``grace`` seconds."""
        for child in self.children.values():
            if child.popen.poll() is None:
                child.popen.terminate()
        deadline = time.monotonic() + grace
        for child in self.children.values():
            try:
                child.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.popen.kill()
                child.popen.wait()
            child.log.close()


def memory_rss(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MB (None once it is gone)."""
    try:
        return float(psutil.Process(pid).memory_info().rss) / MB
    except psutil.Error:
        return None


@dataclass
class MemorySampler:
    """RSS of the soak process and every child, sampled every ``every`` seconds."""

    children: Children
    began: float
    every: float
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def sample(self) -> None:
        """Record one sample of every live process."""
        now = time.monotonic() - self.began
        targets = {HARNESS: os.getpid()}
        targets.update({c.label: c.popen.pid for c in self.children.children.values()})
        for label, pid in targets.items():
            rss = memory_rss(pid)
            if rss is not None:
                self.series.setdefault(label, []).append((now, rss))

    async def run(self, stop: asyncio.Event) -> None:
        """Sample until ``stop`` is set."""
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every)


async def wait_healthy(base: str, child: Child, timeout: float = 60.0) -> float:
    """Wait until ``base``/healthz answers 200; seconds it took. Raises RuntimeError if it never does."""
    began = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            if child.popen.poll() is not None:
                raise RuntimeError(f"{child.label} exited with {child.popen.returncode}")
            try:
                async with session.get(f"{base}/healthz") as resp:
                    if resp.status == 200:
                        return time.monotonic() - began
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() - began > timeout:
                raise RuntimeError(f"{child.label} did not answer {base}/healthz in {timeout:.0f} s")
            await asyncio.sleep(0.2)
