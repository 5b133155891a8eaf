"""A throwaway PgBouncer in transaction mode for tests (Debian's ``pgbouncer``, no systemd).

:func:`start_pgbouncer` writes a config into a temp dir that serves every database of
one server (``* = host=... port=...``) on a free 127.0.0.1 port, starts ``pgbouncer`` in
the foreground as a child process and waits until it answers. The test server trusts
its local logins, so PgBouncer does too (``auth_type = trust``; the names still have to be
in its userlist). As root it runs as the ``pgserver`` user (PgBouncer refuses root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

PGBOUNCER = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_pgbouncer() -> str:
    """The ``pgbouncer`` binary; skip (fail in CI) when it is not installed."""
    if PGBOUNCER is None:
        reason = "pgbouncer is not installed (Debian: apt-get install pgbouncer)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return PGBOUNCER


@dataclass
class PgBouncer:
    """One running PgBouncer: where it listens, and how to route a direct URL through it."""

    port: int
    admin_user: str
    workdir: Path
    process: subprocess.Popen[bytes]

    def url(self, direct_url: str) -> str:
        """``direct_url`` (same user, password and database) through this PgBouncer."""
        parts = urlsplit(direct_url)
        login = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
        netloc = f"{login}@127.0.0.1:{self.port}" if login else f"127.0.0.1:{self.port}"
        return f"postgresql://{netloc}{parts.path or '/postgres'}"

    def settings_env(self, direct_url: str) -> dict[str, str]:
        """The settings docs/scale-out.md gives: pool through PgBouncer, LISTEN direct, no statement cache."""
        return {
            "DATABASE_URL": self.url(direct_url),
            "BGAGENTS_LISTEN_URL": direct_url,
            "BGAGENTS_STATEMENT_CACHE_SIZE": "0",
        }

    @property
    def admin_url(self) -> str:
        """PgBouncer's own admin console (the ``pgbouncer`` database)."""
        return f"postgresql://{self.admin_user}@127.0.0.1:{self.port}/pgbouncer"

    def log(self) -> str:
        """What PgBouncer logged so far."""
        path = self.workdir / "pgbouncer.log"
        return path.read_text("utf-8", "replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop PgBouncer and remove its temp dir."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _server_address(server_url: str) -> tuple[str, int, str, str]:
    """Host (or socket dir), port, user and password of ``server_url``."""
    parts = urlsplit(server_url)
    query = parse_qs(parts.query)
    host = parts.hostname or query.get("host", ["127.0.0.1"])[0]
    port = parts.port or int(query.get("port", ["5432"])[0])
    return host, port, unquote(parts.username or "postgres"), unquote(parts.password or "")


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("pgserver", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return None


def start_pgbouncer(
    server_url: str,
    *,
    users: Iterable[tuple[str, str]] = (),
    pool_size: int = 20,
    timeout: float = 15.0,
) -> PgBouncer:
    """Start a PgBouncer in transaction mode in front of ``server_url``'s server.

    ``users`` are extra (name, password) logins it lets through besides the server URL's.
    Its files live in a new temp dir (top level, so that its own OS user can reach it)."""
    binary = require_pgbouncer()
    host, port, user, password = _server_address(server_url)
    workdir = Path(tempfile.mkdtemp(prefix="bgagents-pgbouncer-"))
    logins = {user: password, **dict(users)}
    (workdir / "userlist.txt").write_text(
        "".join(f'"{name}" "{secret}"\n' for name, secret in logins.items())
    )
    listen = free_port()
    (workdir / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {workdir / "userlist.txt"}
admin_users = {user}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 2000
max_db_connections = 0
server_idle_timeout = 10
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
logfile = {workdir / "pgbouncer.log"}
pidfile = {workdir / "pgbouncer.pid"}
"""
    )
    owner = _run_as()
    command = [binary]
    if owner is not None:
        record = pwd.getpwnam(owner)
        os.chown(workdir, record.pw_uid, record.pw_gid)
        for child in workdir.iterdir():
            os.chown(child, record.pw_uid, record.pw_gid)
        command += ["-u", owner]
    process = subprocess.Popen(
        [*command, str(workdir / "pgbouncer.ini")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    bouncer = PgBouncer(listen, user, workdir, process)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {process.returncode}: {bouncer.log()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", listen), timeout=1).close()
            return bouncer
        except OSError:
            if time.monotonic() > deadline:
                bouncer.stop()
                raise RuntimeError(f"pgbouncer did not listen on {listen} within {timeout:g} s") from None
            time.sleep(0.05)
