"""The README's custom-agent example runs as written."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import BGAGENTS
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def readme_block(start: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return next(b for b in blocks if b.startswith(start))


def test_readme_custom_agent_example(db_url: str, cli_env: dict[str, str], tmp_path: Path) -> None:
    code = readme_block("# greeter.py")
    assert len(code.strip().splitlines()) < 30
    (tmp_path / "greeter.py").write_text(code)
    env = {**cli_env, "DATABASE_URL": db_url}
    agent = subprocess.Popen(
        [*BGAGENTS, "run", "greeter:Greeter"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        done = subprocess.run(
            [*BGAGENTS, "enqueue", "greet", '{"who": "Ada"}', "--wait", "30"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.splitlines()[-1]) == {"text": "Hello, Ada!"}

        last_status = [""]

        def greeter_running() -> dict[str, Any] | None:
            status = subprocess.run(
                [*BGAGENTS, "status", "--json"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            last_status[0] = status.stdout
            agents = {a["name"]: a for a in json.loads(status.stdout)["agents"]}
            greeter: dict[str, Any] | None = agents.get("greeter")
            return greeter if greeter is not None and greeter["status"] == "running" else None

        greeter = wait_until(
            greeter_running,
            timeout=20,
            what="greeter running in `bgagents status`",
            interval=0.2,
            detail=lambda: last_status[0],
        )
        assert greeter["health"] == "up"
        events = subprocess.run(
            [
                *BGAGENTS,
                "db",
                "psql",
                "-Atc",
                "select payload->>'text' from bg.events where channel = 'greetings'",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if events.returncode == 0:  # psql may be missing on a bare machine
            assert events.stdout.strip() == "Hello, Ada!"
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            _, err = agent.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
            _, err = agent.communicate()
            raise AssertionError(f"the agent ignored SIGTERM:\n{err[-4000:]}") from None
    assert agent.returncode == 0, err
