"""The README's custom-agent example runs as written."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import BGAGENTS

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

        deadline = time.monotonic() + 20
        while True:
            status = subprocess.run(
                [*BGAGENTS, "status", "--json"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            agents = {a["name"]: a for a in json.loads(status.stdout)["agents"]}
            if agents.get("greeter", {}).get("status") == "running":
                break
            assert time.monotonic() < deadline, status.stdout
            time.sleep(0.2)
        assert agents["greeter"]["health"] == "up"
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
