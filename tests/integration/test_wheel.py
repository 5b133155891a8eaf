"""The built package serves a live dashboard without Node.js.

From a clean copy of the repository (the files ``git ls-files`` lists, so no
node_modules and no web/static/vendor), ``pip wheel`` runs the in-tree backend, which runs ``npm ci``
and copies htmx into the wheel. The wheel is installed with its pinned
dependencies into a fresh virtual environment outside the repository (no
``--system-site-packages``, nothing of this checkout on ``sys.path``), and that
environment's ``bgagents web`` runs with a PATH holding only its own ``bin``: no
node, no npm. It serves htmx and the overview. npm is needed at build time only.

It takes one to two minutes (installing the dependencies dominates; pip's cache
makes repeat runs faster), bounded by the timeout below.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_agents import free_port
from tests.integration.test_prometheus import Process, answers
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
HTMX = "/static/vendor/htmx.org/dist/htmx.min.js"
SSE = "/static/vendor/htmx-ext-sse/dist/sse.min.js"

pytestmark = pytest.mark.timeout(900)


def _need(tool: str, why: str) -> str:
    found = shutil.which(tool)
    if found is None:
        message = f"{tool} is not installed ({why})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _run(args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output}"
    return result.stdout


def clean_copy(target: Path) -> Path:
    """The repository's files as ``git ls-files`` lists them, from the index, and nothing else.

    The index, not the work tree: what a clean clone would hold once staged work is
    committed, without half-done edits lying in the work tree.
    """
    _need("git", "apt-get install -y git")
    _run(["git", "checkout-index", "--all", f"--prefix={target}/"], ROOT, 120)
    assert (target / "pyproject.toml").is_file()
    assert not (target / "web" / "node_modules").exists()
    assert not (target / "web" / "static" / "vendor").exists()
    return target


@pytest.fixture
def web_process() -> Iterator[list[Process]]:
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in started:
            process.stop()


def get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read()


def test_a_wheel_from_a_clean_copy_serves_htmx_from_a_fresh_venv_without_node(
    tmp_path: Path, db_url: str, cli_env: dict[str, str], web_process: list[Process]
) -> None:
    _need("npm", "the build runs `npm ci --prefix web`: apt-get install -y npm")
    source = clean_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(source)], tmp_path, 300)
    (wheel,) = dist.glob("background_agents-*.whl")
    assert (source / "web" / "node_modules" / "htmx.org").is_dir()  # the build ran npm ci

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, 120)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], tmp_path, 600)

    bare_path = str(venv / "bin")
    assert shutil.which("node", path=bare_path) is None and shutil.which("npm", path=bare_path) is None
    env = {k: v for k, v in cli_env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    port = free_port()
    env.update(
        PATH=bare_path,
        DATABASE_URL=db_url,
        BGAGENTS_HOST="127.0.0.1",
        BGAGENTS_PORT=str(port),
        HOME=str(tmp_path / "home"),
    )
    installed = _run([str(python), "-c", "import web; print(web.__file__)"], tmp_path, 30, env).strip()
    assert Path(installed).is_relative_to(venv), installed  # the package, not this checkout

    web = Process([str(venv / "bin" / "bgagents"), "web"], tmp_path / "web.log", env=env, cwd=tmp_path)
    web_process.append(web)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: answers(f"{base}{HTMX}"), timeout=60, what="bgagents web up", detail=web.output)

    status, content_type, body = get(f"{base}{HTMX}")
    assert status == 200 and "javascript" in content_type
    assert b"htmx" in body and len(body) > 10_000
    status, _, body = get(f"{base}{SSE}")
    assert status == 200 and b"sse" in body
    status, _, page = get(f"{base}/")
    assert status == 200
    assert HTMX.encode() in page and SSE.encode() in page  # the overview loads them: live updates
    assert "dashboard assets are missing" not in web.output()
