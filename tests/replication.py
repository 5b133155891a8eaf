"""A primary and a streaming hot standby for failover tests, built with the embedded server's binaries.

:class:`ReplicaPair` runs ``initdb``, ``pg_ctl`` and ``pg_basebackup`` from
``bus.embedded.bin_dir()`` in a temp dir, on two free 127.0.0.1 ports. As root every
server command runs as the ``pgserver`` user (PostgreSQL refuses root). With
``synchronous=True`` the primary names the standby in ``synchronous_standby_names``, so a
commit is acknowledged only once the standby has flushed it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from bus import embedded
from tests.pgbouncer import free_port


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("pgserver")
    except KeyError as exc:
        raise RuntimeError(
            "as root, the failover test needs the pgserver OS user (the embedded server makes it)"
        ) from exc
    return "pgserver"


class ReplicaPair:
    """Two servers: ``primary`` (port ``ports[0]``) and its standby (``ports[1]``)."""

    def __init__(self, *, synchronous: bool) -> None:
        self.synchronous = synchronous
        self.bin = embedded.bin_dir()
        self.user = _server_user()
        self.base = Path(tempfile.mkdtemp(prefix="bgagents-failover-"))
        if self.user is not None:
            record = pwd.getpwnam(self.user)
            os.chown(self.base, record.pw_uid, record.pw_gid)
        self.ports = (free_port(), free_port())
        self.dirs = (self.base / "primary", self.base / "standby")
        self.started: list[Path] = []

    # --- commands -----------------------------------------------------------------------

    def run(self, tool: str, *args: str, timeout: float = 120) -> str:
        """Run one of the server's binaries as the server's OS user; raise with its output if it fails."""
        result = subprocess.run(
            [str(self.bin / tool), *args],
            user=self.user,
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result.stdout

    def url(self, which: int, database: str = "bg") -> str:
        """A direct URL of one server."""
        return f"postgresql://postgres@127.0.0.1:{self.ports[which]}/{database}"

    def multi_host_url(self, database: str = "bg") -> str:
        """Both servers, read-write only: what a client of a failover pair uses."""
        ports = ",".join(map(str, self.ports))
        return (
            f"postgresql://postgres@/{database}?host=127.0.0.1,127.0.0.1&port={ports}"
            "&target_session_attrs=read-write"
        )

    # --- lifecycle ----------------------------------------------------------------------

    def start_primary(self) -> None:
        primary = self.dirs[0]
        self.run("initdb", "-D", str(primary), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        settings = [
            f"port = {self.ports[0]}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.base}'",
            "wal_level = replica",
            "max_wal_senders = 5",
            "hot_standby = on",
            "wal_keep_size = '256MB'",
            "max_connections = 200",
            "fsync = off",  # the OS keeps what was written; an immediate stop still loses WAL buffers
        ]
        with (primary / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(settings) + "\n")
        self.pg_ctl(0, "start")

    def start_standby(self) -> None:
        standby = self.dirs[1]
        self.run(
            "pg_basebackup",
            "-h", "127.0.0.1", "-p", str(self.ports[0]), "-U", "postgres",
            "-D", str(standby), "-R", "-X", "stream", "-c", "fast", "--no-sync",
        )  # fmt: skip
        with (standby / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {self.ports[1]}\n")
        self.pg_ctl(1, "start")
        if self.synchronous:  # only now: until a standby streams, every commit would wait
            self.psql(0, "ALTER SYSTEM SET synchronous_standby_names = '*'")
            self.psql(0, "SELECT pg_reload_conf()")

    def psql(self, which: int, sql: str) -> str:
        """Run one statement with psql on one server (setup only); its unaligned output."""
        port = str(self.ports[which])
        return self.run("psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-c", sql)

    def pg_ctl(self, which: int, action: str, *extra: str) -> None:
        folder = self.dirs[which]
        self.run("pg_ctl", "-D", str(folder), "-l", str(folder / "server.log"), "-w", *extra, action)
        if action == "start" and folder not in self.started:
            self.started.append(folder)

    def crash_primary(self) -> None:
        """Stop the primary the hard way: no checkpoint, WAL buffers not yet written are gone."""
        self.pg_ctl(0, "stop", "-m", "immediate")

    def promote_standby(self) -> None:
        self.pg_ctl(1, "promote")

    def log(self, which: int) -> str:
        path = self.dirs[which] / "server.log"
        return path.read_text("utf-8", "replace")[-3000:] if path.exists() else ""

    def cleanup(self) -> None:
        """Stop whatever still runs and remove the temp dir."""
        for folder in self.started:
            if (folder / "postmaster.pid").exists():
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self.run("pg_ctl", "-D", str(folder), "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)
