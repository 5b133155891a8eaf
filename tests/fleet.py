"""The ``bgagents`` processes of one test, each logging to its own file.

:class:`ProcessFleet` keeps the processes and their logs, shows the logs' tails
when a wait times out, and stops everything at the end (SIGTERM, then SIGKILL).
Subclasses say how a process starts: on this host
(``tests.integration.test_agents.Fleet``) or inside a network namespace
(``tests.scaleout.netns.HostsFleet``).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import BGAGENTS
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


class ProcessFleet:
    """Processes of one test, each logging to its own file under ``logs``."""

    tail_lines = 15  # lines of each log that a report shows
    poll_interval = 0.1  # seconds between the probes of :meth:`wait`

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def spawn(
        self, label: str, args: Sequence[str], popen: Callable[..., subprocess.Popen[Any]] = subprocess.Popen
    ) -> subprocess.Popen[bytes]:
        """Start ``bgagents *args`` with ``popen``, logging to ``<n>-<label>.log``."""
        log = self.logs / f"{len(self.procs)}-{label}.log"
        with log.open("wb") as out:
            proc: subprocess.Popen[bytes] = popen(
                [*BGAGENTS, *args], env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        self.procs.append((proc, log))
        return proc

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        for p, log in self.procs:
            if p is proc:
                return log.read_text(errors="replace")
        raise KeyError(proc.pid)

    def report(self) -> str:
        parts = []
        for proc, log in self.procs:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-self.tail_lines :])
            parts.append(f"--- pid {proc.pid} {log.name} (exit {proc.poll()}):\n{tail}")
        return "\n".join(parts)

    def stop_all(self) -> None:
        """SIGTERM every process still running, then SIGKILL those that do not exit."""
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    async def wait(self, probe: Callable[[], Awaitable[T | None]], timeout: float, what: str) -> T:
        """Poll ``probe`` until it returns something truthy; on timeout, fail with the processes' logs."""
        return await eventually(
            probe, timeout=timeout, what=what, interval=self.poll_interval, detail=self.report
        )
