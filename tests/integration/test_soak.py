"""``bgagents bench soak --short`` through the CLI: every fault, then an audit with nothing lost.

The soak restarts PostgreSQL, so it runs on an embedded server of its own (a
private data dir), never the session's test server. With TEST_DATABASE_URL
set, the suite runs on a server this test cannot restart, so it skips.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import BGAGENTS

ROOT = Path(__file__).resolve().parents[2]
SOAK_TIMEOUT_S = 300
"""The short soak loads for 40 s and drains for at most 90 s; this bounds it on a busy machine."""

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TEST_DATABASE_URL")),
    reason="the soak restarts PostgreSQL; TEST_DATABASE_URL names a server this test cannot restart",
)


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_") and k != "DATABASE_URL"}
    env["BGAGENTS_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _audit(out: str, key: str) -> str:
    match = re.search(rf"^\s+{re.escape(key)}\s{{2,}}(.+)$", out, re.M)
    assert match, f"no audit line {key!r} in:\n{out}"
    return match.group(1).strip()


def test_short_soak_loses_nothing_and_writes_its_report(tmp_path: Path) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="bgagents-soak-"))  # the server's own user must reach it
    env = _env(data_dir)
    report = tmp_path / "soak.html"
    try:
        proc = subprocess.run(
            [*BGAGENTS, "bench", "soak", "--short", "--report", str(report)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=SOAK_TIMEOUT_S,
        )
    finally:
        subprocess.run([*BGAGENTS, "db", "stop"], env=env, cwd=ROOT, capture_output=True, timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "chaos schedule" in out
    for fault in ("kill-worker", "terminate-listen", "kill-web", "stall-sse", "restart-postgres"):
        assert re.search(rf"^\s+[\d.]+ s\s+{fault}\s+\S", out, re.M), f"{fault} was not injected:\n{out}"
    ended = re.search(r"terminate-listen\s+ended (\d+) LISTEN connections", out)
    assert ended and int(ended.group(1)) >= 1, out
    assert _audit(out, "lost tasks") == "0"
    assert _audit(out, "tasks not finished") == "0"
    assert _audit(out, "lost events") == "0"
    assert _audit(out, "duplicated events") == "0"
    assert _audit(out, "out-of-order events") == "0"
    assert _audit(out, "stalled clients").startswith("1 of 1 cut off")
    assert _audit(out, "alerts").endswith("0 still pending or firing")
    assert _audit(out, "audit") == "PASS"
    assert f"report: {report}" in out
    html = report.read_text(encoding="utf-8")
    assert html.count("<svg") == 3
    assert "restart-postgres" in html
