"""The ``bgagents`` command line as a user runs it: real processes, real server."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import BGAGENTS

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BGAGENTS, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_one_clean_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    errors = [
        ln
        for ln in (result.stderr + result.stdout).splitlines()
        if ln.lower().startswith("error:") or ln.startswith("✗")  # click's usage errors say "Error:"
    ]
    assert len(errors) == 1, result.stderr + result.stdout
    for needle in needles:
        assert needle in errors[0]


def test_doctor_on_a_healthy_setup(db_url: str, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "DATABASE_URL": db_url, "BGAGENTS_PORT": str(free_port())}
    result = run(["doctor"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(ln.startswith("✓ database") for ln in lines)
    assert any(ln.startswith("✓ schema: current") for ln in lines)
    assert any(ln.startswith("✓ web port") and "free" in ln for ln in lines)
    assert not any(ln.startswith("✗") for ln in lines)


def test_doctor_reports_a_pending_schema(empty_db_url: str, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "DATABASE_URL": empty_db_url, "BGAGENTS_PORT": str(free_port())}
    result = run(["doctor"], env)
    assert_one_clean_error(result, "schema", "bgagents migrate")


def test_doctor_reports_a_port_taken_by_another_program(db_url: str, cli_env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**cli_env, "DATABASE_URL": db_url, "BGAGENTS_PORT": str(port)}
        result = run(["doctor"], env)
    assert_one_clean_error(result, "web port", "BGAGENTS_PORT")


def test_bench_events_runs_in_a_scratch_database(db_url: str, cli_env: dict[str, str]) -> None:
    import json

    args = ["bench", "events", "--seconds", "1", "--rate", "50", "--publishers", "1", "--json"]
    result = run(args, {**cli_env, "DATABASE_URL": db_url})
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["events"] == 50 and figures["delivered_per_s"] > 0


@pytest.mark.parametrize(
    ("env_update", "needles"),
    [
        ({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"}, ["127.0.0.1:1", "refused"]),
        ({"DATABASE_URL": "garbage"}, ["DATABASE_URL"]),
        ({"BGAGENTS_PORT": "notaport"}, ["BGAGENTS_PORT"]),
    ],
)
def test_broken_setups_give_one_clear_line(
    env_update: dict[str, str], needles: list[str], cli_env: dict[str, str]
) -> None:
    assert_one_clean_error(run(["doctor"], {**cli_env, **env_update}), *needles)


def test_unknown_database_names_the_fix(db_url: str, cli_env: dict[str, str]) -> None:
    missing = (
        db_url.rsplit("/", 1)[0] + "/no_such_db" + ("?" + db_url.split("?", 1)[1] if "?" in db_url else "")
    )
    result = run(["migrate"], {**cli_env, "DATABASE_URL": missing})
    assert_one_clean_error(result, "no_such_db")


def test_migrate_status_and_sql(empty_db_url: str, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "DATABASE_URL": empty_db_url}
    status = run(["migrate", "--status"], env)
    assert status.returncode == 0
    assert "pending" in status.stdout and "0001_init.sql" in status.stdout
    script = run(["migrate", "--sql"], env)
    assert script.returncode == 0
    assert "CREATE TABLE bg.shared_state" in script.stdout
    assert "INSERT INTO bg.schema_migrations" in script.stdout


def test_two_migrate_processes_at_once(empty_db_url: str, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "DATABASE_URL": empty_db_url}
    procs = [
        subprocess.Popen(
            [*BGAGENTS, "migrate"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    status = run(["migrate", "--status"], env)
    applied = [ln for ln in status.stdout.splitlines() if ln.startswith("applied")]
    assert applied and all(ln.count("applied") == 1 for ln in applied)
    assert "pending" not in status.stdout


def test_stats_json(db_url: str, cli_env: dict[str, str]) -> None:
    import json

    result = run(["stats", "--json"], {**cli_env, "DATABASE_URL": db_url})
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["transactions_per_second"] is not None
    tables = figures["largest_tables"]
    assert tables and all(t["table"].startswith("bg.") for t in tables)


def test_setup_yes_writes_env_migrates_and_runs_doctor(
    empty_db_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    env = {**cli_env, "BGAGENTS_PORT": str(free_port())}
    result = run(["setup", "--yes", "--database-url", empty_db_url, "--env-file", str(env_file)], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"DATABASE_URL={empty_db_url}" in env_file.read_text()
    assert "✓ schema: current" in result.stdout


def test_embedded_server_lifecycle_from_any_folder(cli_env: dict[str, str], tmp_path: Path) -> None:
    """`db url` starts the embedded server, psql reaches it from anywhere, `db stop` stops it."""
    env = {**cli_env, "BGAGENTS_DATA_DIR": str(tmp_path / "data")}
    url = run(["db", "url"], env)
    assert url.returncode == 0, url.stderr
    dsn = url.stdout.strip()
    try:
        again = run(["db", "url"], env)
        assert again.stdout.strip() == dsn  # a second start reuses the running server
        migrated = run(["migrate"], env)
        assert migrated.returncode == 0, migrated.stderr
        psql = shutil.which("psql")
        if psql:
            out = subprocess.run(
                [psql, dsn, "-Atc", "select 1"], capture_output=True, text=True, cwd="/", timeout=30
            )
            assert out.stdout.strip() == "1", out.stderr
        else:
            import asyncpg

            async def select_one() -> int:
                conn = await asyncpg.connect(dsn)
                try:
                    return int(await conn.fetchval("select 1"))
                finally:
                    await conn.close()

            assert asyncio.run(select_one()) == 1
    finally:
        stopped = run(["db", "stop"], env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert "not running" in run(["db", "stop"], env).stdout


def test_db_stop_with_database_url_names_the_fix(db_url: str, cli_env: dict[str, str]) -> None:
    assert_one_clean_error(run(["db", "stop"], {**cli_env, "DATABASE_URL": db_url}), "DATABASE_URL")


# --- bad input: one line, never a traceback ----------------------------------------------


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["enqueue", "q", "[" * 100000], ["PAYLOAD", "nests deeper"]),
        (["enqueue", "q", "[" * 100 + "]" * 100], ["PAYLOAD", "nests deeper"]),
        (["publish", "ch", "{" * 50000], ["PAYLOAD"]),
        (["schedule", "add", "s", "* * * * *", "-q", "q", "--payload", "[1]"], ["--payload", "object"]),
        (["enqueue", "q", "--delay", "nan"], ["--delay"]),
        (["enqueue", "q", "--timeout", "inf"], ["--timeout"]),
        (["enqueue", "q", "--priority", "99999999999"], ["--priority"]),
        (["tasks", "show", "99999999999999999999"], ["TASK_ID"]),
        (["tasks", "retry", "99999999999999999999"], ["TASK_ID"]),
        (["tasks", "cancel", "99999999999999999999"], ["TASK_ID"]),
        (["run", "../x:y"], ["../x:y"]),
        (["worker", "-q", "q", "--handler", "../x:y"], ["--handler"]),
        (["worker", "-q", "q", "--handler", "h4_cli_boom:handle"], ["h4_cli_boom", "RuntimeError"]),
        (["run", "h4_cli_boom:Agent"], ["h4_cli_boom", "RuntimeError"]),
        (["run", "h4_cli_syntax:Agent"], ["h4_cli_syntax", "SyntaxError"]),
        (["search", "x" * 1001], ["'q'", "1000"]),
        (["ask", "why " * 20], ["'question'", "at most 10"]),
        (["ask", "why?", "--timeout", "nan"], ["--timeout"]),
        (["report", "--hours", "nan"], ["--hours"]),
    ],
)
def test_bad_input_is_one_line(
    args: list[str], needles: list[str], db_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "h4_cli_boom.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "h4_cli_syntax.py").write_text("def (:\n")
    env = {
        **cli_env,
        "DATABASE_URL": db_url,
        "PYTHONPATH": str(tmp_path),
        "BGAGENTS_MAX_QUESTION_CHARS": "10",
    }
    assert_one_clean_error(run(args, env), *needles)


def test_ingest_skips_a_symlink_out_of_the_folder(cli_env: dict[str, str], tmp_path: Path) -> None:
    """The skip is said on one line, before anything is embedded (here no database is reachable)."""
    (tmp_path / "secret.txt").write_text("secret")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leak.md").symlink_to(tmp_path / "secret.txt")
    env = {**cli_env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"}
    result = run(["ingest", str(docs)], env)
    skipped = [ln for ln in result.stderr.splitlines() if "skipped" in ln]
    assert len(skipped) == 1 and "leak.md" in skipped[0] and "outside" in skipped[0], result.stderr
    assert_one_clean_error(result, "nothing to ingest")


HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b31m"


async def test_database_text_reaches_the_terminal_without_control_characters(
    conn: asyncpg.Connection, db_url: str, cli_env: dict[str, str]
) -> None:
    """Agent notes, alert summaries, task errors and tracebacks, queue names: nothing raw."""
    await conn.execute(
        "insert into bg.agents (instance_id, name, host, pid, status, health, last_beat_at, note) "
        "values ('perf@h1', 'performance', $1, 42, 'running', 'up', now(), $2)",
        "h1" + HOSTILE,
        "note " + HOSTILE,
    )
    await conn.execute(
        "insert into bg.alerts (fingerprint, rule, labels, severity, summary, state, fired_at) "
        "values ('fp1', 'agent_down', '{}', 'critical', $1, 'firing', now())",
        "summary " + HOSTILE,
    )
    task_id = await conn.fetchval("select bg.enqueue('web', $1::jsonb)", json.dumps({"s": HOSTILE}))
    await conn.execute(
        "update bg.tasks set status = 'failed', last_error = $2, last_traceback = $3 where id = $1",
        task_id,
        "error " + HOSTILE,
        "Traceback " + HOSTILE,
    )
    env = {**cli_env, "DATABASE_URL": db_url}
    outputs = {
        "status": run(["status"], env),
        "tasks": run(["tasks"], env),
        "tasks show": run(["tasks", "show", str(task_id)], env),
    }
    for name, result in outputs.items():
        out = result.stdout + result.stderr
        assert "Traceback (most recent" not in out, (name, out)
        assert not any(ch in out for ch in "\x1b\x07\x9b"), (name, out)
    assert "note ?]0;pwned??[2J?31m" in outputs["status"].stdout
    assert "summary ?]0;pwned" in outputs["status"].stdout
    assert "error ?]0;pwned" in outputs["tasks"].stdout
    assert "Traceback ?]0;pwned" in outputs["tasks show"].stdout
