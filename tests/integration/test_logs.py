"""Log files: BGAGENTS_LOG_DIR gives each agent its NAME.log (also under ``up``), rotated by
size, and BGAGENTS_LOG_FORMAT=json gives one JSON object per line."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.runtime import logs
from tests.conftest import BGAGENTS, ROOT
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)

STARTUP = 40.0  # a fresh `bgagents up` imports, migrates, connects and registers five agents


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start(
    processes: list[subprocess.Popen[bytes]], env: dict[str, str], stderr: Path, *args: str
) -> subprocess.Popen[bytes]:
    with stderr.open("wb") as out:
        proc = subprocess.Popen([*BGAGENTS, *args], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    processes.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(20)


def text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_run_writes_the_agents_log_file(
    db_url: str, cli_env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    folder = tmp_path / "logs"
    env = {**cli_env, "DATABASE_URL": db_url, "BGAGENTS_LOG_DIR": str(folder)}
    err = tmp_path / "stderr"
    proc = start(processes, env, err, "run", "heartbeat")
    log = folder / "heartbeat.log"
    line = wait_until(
        lambda: next((ln for ln in text(log).splitlines() if "heartbeat started as heartbeat@" in ln), None),
        timeout=STARTUP,
        what="heartbeat.log has the agent's start line",
        interval=0.1,
        detail=lambda: text(err),
    )
    assert " INFO agents.runtime.supervisor: " in line
    assert line in text(err)  # standard error gets it too
    assert stop(proc) == 0, text(err)
    assert "Traceback" not in text(log)


def test_up_gives_each_agent_its_own_file_in_json(
    db_url: str, cli_env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    folder = tmp_path / "logs"
    env = {
        **cli_env,
        "DATABASE_URL": db_url,
        "BGAGENTS_LOG_DIR": str(folder),
        "BGAGENTS_LOG_FORMAT": "json",
    }
    err = tmp_path / "stderr"
    proc = start(processes, env, err, "up", "--no-web")
    names = ["coordinator", "heartbeat", "performance", "ai-help", "langsmith-bridge"]

    def all_started() -> bool:
        return all(f"{name} started as {name}@" in text(folder / f"{name}.log") for name in names)

    wait_until(
        all_started,
        timeout=STARTUP,
        what="every agent's start line in its own file",
        detail=lambda: text(err),
    )
    wait_until(
        lambda: "leader is now" in text(folder / "coordinator.log"),
        timeout=STARTUP,
        what="the coordinator's own line in coordinator.log",
        detail=lambda: text(err),
    )
    assert stop(proc) == 0, text(err)
    for name in names:
        entries = [json.loads(line) for line in text(folder / f"{name}.log").splitlines()]
        assert entries, name
        for entry in entries:
            assert {"ts", "level", "logger", "message", "agent", "task_id", "pid"} <= set(entry), entry
            assert entry["agent"] == name, (name, entry)
            assert entry["pid"] == proc.pid
        others = [n for n in names if n != name]
        assert not [e for e in entries if any(f"{o} started as" in e["message"] for o in others)]
    stderr_logs = [json.loads(line) for line in text(err).splitlines() if line.startswith("{")]
    assert {e["agent"] for e in stderr_logs} >= set(names)
    assert not [line for line in text(err).splitlines() if " INFO " in line]  # no text-format records


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("tests.logs.rotation")
    log.propagate = False
    log.setLevel(logging.INFO)
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def test_files_rotate_at_the_size_limit(tmp_path: Path, logger: logging.Logger) -> None:
    router = logs.AgentFileRouter(tmp_path, max_bytes=1000, backup_count=2)
    router.setFormatter(logs.make_formatter("text"))
    logger.addHandler(router)
    with logs.agent_context("worker-a"):
        for i in range(100):
            logger.info("record %03d %s", i, "x" * 40)
    logger.info("no agent here")
    files = sorted(p.name for p in tmp_path.glob("*.log*") if not p.name.startswith("."))
    assert files == ["bgagents.log", "worker-a.log", "worker-a.log.1", "worker-a.log.2"]
    for name in files:
        assert (tmp_path / name).stat().st_size <= 1000
    assert "record 099" in (tmp_path / "worker-a.log").read_text()
    assert "record 000" not in "".join((tmp_path / n).read_text() for n in files)  # beyond backup_count
    assert (tmp_path / "bgagents.log").read_text().endswith("no agent here\n")


def test_two_writers_of_one_file_follow_each_others_rotation(tmp_path: Path, logger: logging.Logger) -> None:
    """Two processes appending to worker.log: after one rotates, the other writes to the new file."""
    first = logs.SharedRotatingFileHandler(tmp_path / "worker.log", max_bytes=300, backup_count=3)
    second = logs.SharedRotatingFileHandler(tmp_path / "worker.log", max_bytes=300, backup_count=3)
    for handler in (first, second):
        handler.setFormatter(logging.Formatter("%(message)s"))
    records = [
        logging.LogRecord("w", logging.INFO, "", 0, f"line {i:02d} " + "y" * 20, None, None)
        for i in range(30)
    ]
    for i, record in enumerate(records):
        (first if i % 2 else second).handle(record)
    for handler in (first, second):
        handler.close()
    assert (tmp_path / "worker.log.2").exists()  # it did rotate, more than once
    lines = []
    for name in ["worker.log.3", "worker.log.2", "worker.log.1", "worker.log"]:
        path = tmp_path / name
        if path.exists():
            assert path.stat().st_size <= 300, name
            lines += path.read_text().splitlines()
    assert lines == [r.getMessage() for r in records]  # in order, none lost to a renamed file


def test_json_lines_carry_extra_fields_and_the_traceback(tmp_path: Path, logger: logging.Logger) -> None:
    router = logs.AgentFileRouter(tmp_path)
    router.setFormatter(logs.make_formatter("json"))
    logger.addHandler(router)
    logger.info("claimed %d", 3, extra={"agent": "mailer", "task_id": 42, "queue": "mail"})
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("handler failed", extra={"task_id": 43})
    web = logging.getLogger("aiohttp.access")
    web.addHandler(router)
    web.propagate = False
    try:
        web.warning("GET / 200")
    finally:
        web.removeHandler(router)
        web.propagate = True
    first = json.loads((tmp_path / "mailer.log").read_text())
    assert first["message"] == "claimed 3"
    assert (first["agent"], first["task_id"], first["queue"], first["level"]) == (
        "mailer",
        42,
        "mail",
        "INFO",
    )
    assert first["logger"] == "tests.logs.rotation"
    assert first["ts"].endswith("+00:00")
    failed = json.loads((tmp_path / "bgagents.log").read_text())
    assert failed["agent"] is None and failed["task_id"] == 43
    assert "ValueError: boom" in failed["exc"] and "Traceback" in failed["exc"]
    assert json.loads((tmp_path / "web.log").read_text())["message"] == "GET / 200"
