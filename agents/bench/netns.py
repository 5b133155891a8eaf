"""Hosts on one machine: network namespaces on a private bridge, and a PostgreSQL reachable over TCP.

A :class:`Network` is a bridge in the root namespace (``10.231.<index>.1/24``)
with one namespace per "host" (``10.231.<index>.<10 + n>``), each joined to the
bridge by a veth pair. Processes run inside with ``ip netns exec`` and under
``unshare --uts`` with their own hostname, so ``socket.gethostname()`` names
the host. Traffic stays on that bridge: no namespace has a default route and
nothing is forwarded. Every name starts with ``bgn<index>-``; starting a
network first removes what a crashed run with the same index left behind (a
lock file keeps two live runs from sharing an index). A :class:`TcpServer` is a
throwaway PostgreSQL cluster (the embedded server's binaries) listening on the
bridge address with a random password. Both need root and iproute2.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bus.errors import BgError

logger = logging.getLogger(__name__)

SUBNET = "10.231.{index}"
"""The private /24 of network ``index``: used only on the bridge and inside its namespaces."""

STATE_DIR = Path(tempfile.gettempdir())


class NetnsError(BgError):
    """Network namespaces are not available here (they need root and iproute2)."""


def unavailable() -> str | None:
    """Why namespaces can't be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare", "hostname"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install iproute2 util-linux hostname)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()}"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


@dataclass(frozen=True)
class Host:
    """One namespace: its name, the hostname its processes see, and its address."""

    netns: str
    hostname: str
    address: str
    veth: str  # the root-side end of its link

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` run inside this host, under its own hostname."""
        return [
            "ip", "netns", "exec", self.netns,
            "unshare", "--uts", "--",
            "sh", "-c", 'hostname "$0" && exec "$@"', self.hostname, *command,
        ]  # fmt: skip


class Network:
    """A bridge and ``hosts`` namespaces on it; :meth:`up` builds them, :meth:`down` removes them."""

    def __init__(self, hosts: int, index: int = 0, hostnames: Sequence[str] | None = None) -> None:
        if not 1 <= hosts <= 200 or not 0 <= index <= 255:
            raise ValueError("hosts must be 1..200 and index 0..255")
        self.index = index
        self.prefix = f"bgn{index}-"
        self.subnet = SUBNET.format(index=index)
        self.gateway = f"{self.subnet}.1"
        self.bridge = f"{self.prefix}br"
        names = list(hostnames or [f"{self.prefix}host{n + 1}" for n in range(hosts)])
        self.hosts = [
            Host(f"{self.prefix}h{n + 1}", names[n], f"{self.subnet}.{10 + n + 1}", f"{self.prefix}v{n + 1}")
            for n in range(hosts)
        ]
        self._lock: IO[str] | None = None

    @property
    def cidr(self) -> str:
        return f"{self.subnet}.0/24"

    def up(self) -> list[Host]:
        """Lock the index, remove a crashed run's leftovers, build the bridge and every host."""
        reason = unavailable()
        if reason:
            raise NetnsError(reason)
        lock = (STATE_DIR / f"bgagents-{self.prefix}lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise NetnsError(f"another run uses {self.cidr}; pick another index than {self.index}") from None
        self._lock = lock
        try:
            remove_leftovers(self.prefix)
            _ip("link", "add", "name", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for host in self.hosts:
                self._add(host)
        except BaseException:
            self.down()
            raise
        return self.hosts

    def _add(self, host: Host) -> None:
        peer = f"{host.veth}p"
        _ip("netns", "add", host.netns)
        _ip("link", "add", host.veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", host.netns)
        _ip("link", "set", host.veth, "master", self.bridge)
        _ip("link", "set", host.veth, "up")
        _ip("-n", host.netns, "link", "set", peer, "name", "eth0")
        _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.netns, "link", "set", "eth0", "up")
        _ip("-n", host.netns, "link", "set", "lo", "up")

    def cut(self, host: Host) -> None:
        """Take the host off the network: its link goes down (its processes keep running)."""
        _ip("-n", host.netns, "link", "set", "eth0", "down")

    def restore(self, host: Host) -> None:
        """Bring the host's link back up (its subnet route comes back with it)."""
        _ip("-n", host.netns, "link", "set", "eth0", "up")

    def popen(self, host: Host, command: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``command`` inside ``host``; its pid is the command's own (every step execs)."""
        return subprocess.Popen(host.argv(command), **kwargs)

    def down(self) -> None:
        """Remove every namespace, veth and the bridge (idempotent), then release the index."""
        remove_leftovers(self.prefix)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Network:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


def remove_leftovers(prefix: str) -> None:
    """Delete namespaces (killing what runs in them) and links whose name starts with ``prefix``."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(prefix):
            pids = _ip("netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            _ip("netns", "del", name, check=False)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            name = parts[1].strip().split("@")[0]
            if name.startswith(prefix):
                _ip("link", "del", name, check=False)


def _server_user() -> tuple[str, int, int] | None:
    """The OS user PostgreSQL runs as when we are root (it refuses root): the embedded one's."""
    if os.geteuid() != 0:
        return None
    for name in ("pgserver", "postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return name, entry.pw_uid, entry.pw_gid
    raise NetnsError("no OS user to run PostgreSQL as (add one named pgserver)")


def free_port(address: str) -> int:
    """A TCP port nothing listens on at ``address``."""
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class TcpServer:
    """A throwaway PostgreSQL cluster on ``address``, reachable from ``cidr`` with a password."""

    def __init__(self, bin_dir: Path, address: str, cidr: str, name: str) -> None:
        self.bin_dir = bin_dir
        self.address = address
        self.cidr = cidr
        self.root = STATE_DIR / f"bgagents-{name}pg"
        self.pgdata = self.root / "data"
        self.password = secrets.token_hex(12)
        self.port = 0
        self._user = _server_user()

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self.bin_dir / tool), *args]
        if self._user is not None:
            argv = ["runuser", "-u", self._user[0], "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            raise NetnsError(f"{tool} failed: {result.stderr.strip() or result.stdout.strip()}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@{self.address}:{self.port}/{database}"

    def start(self, max_connections: int = 300) -> str:
        """initdb, configure, start; returns the superuser URL of the ``postgres`` database."""
        self.stop()  # a crashed run's cluster
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(mode=0o700)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._user is not None:
            os.chown(self.root, self._user[1], self._user[2])
            os.chown(pwfile, self._user[1], self._user[2])
        self._run(
            "initdb", "-D", str(self.pgdata), "-U", "postgres", f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        self.port = free_port(self.address)
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = '{self.address}'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\nmax_connections = {max_connections}\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        with (self.pgdata / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.cidr} scram-sha-256\n")
        log = self.root / "server.log"
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(log), "-w", "-t", "60", "start")
        logger.info("PostgreSQL listening on %s:%s", self.address, self.port)
        return self.url()

    def stop(self) -> None:
        """Stop the cluster at once (idempotent) and delete its files."""
        if (self.pgdata / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(self.pgdata), "-m", "immediate", "-w", "stop")
            except NetnsError as exc:
                logger.warning("could not stop the server in %s: %s", self.pgdata, exc)
        shutil.rmtree(self.root, ignore_errors=True)
