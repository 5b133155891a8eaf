"""Fixtures for multi-host tests: three namespaces ("hosts") on a bridge, one PostgreSQL over TCP.

The namespace and server code is :mod:`agents.bench.netns` (``bgagents bench
queue --hosts`` uses it too). ``lab`` builds the network ``10.231.0.0/24``
(index 0, names ``bgn0-*``) and a PostgreSQL on the bridge address once per
module, with a migrated template database; ``lab_db`` gives each test its own
copy and ``hosts_fleet`` starts ``bgagents`` processes inside the hosts.
Everything is removed in finalizers, also when a test fails, and a crashed
run's leftovers are removed before the next run builds its own. Without root
or ``ip netns`` the tests skip with the reason; with ``CI=true`` they fail.
"""

from __future__ import annotations

import functools
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from agents.bench.netns import Host, Network, TcpServer, unavailable
from bus import migrate
from bus.embedded import bin_dir
from tests.conftest import with_database
from tests.fleet import ProcessFleet

HOSTNAMES = ("host-a", "host-b", "host-c")


def require_netns() -> None:
    """Skip (fail in CI) when namespaces can't be made here."""
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"multi-host tests must run in CI: {reason}")
    pytest.skip(reason)


@dataclass
class Lab:
    """The network, its hosts and the server's admin URL (over TCP on the bridge)."""

    network: Network
    server: TcpServer
    template: str

    @property
    def hosts(self) -> list[Host]:
        return self.network.hosts


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    require_netns()
    network = Network(len(HOSTNAMES), index=0, hostnames=HOSTNAMES)
    network.up()
    server = TcpServer(bin_dir(), network.gateway, network.cidr, network.prefix)
    try:
        admin_url = server.start()
        template = "bg_hosts_template"
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{template}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(with_database(admin_url, template))
        try:
            await migrate.migrate(conn)
        finally:
            await conn.close()
        yield Lab(network, server, template)
    finally:
        server.stop()
        network.down()


@pytest.fixture
async def lab_db(lab: Lab) -> AsyncIterator[str]:
    """URL (over TCP) of a migrated database of this test's own; every link is up again afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(lab.server.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{lab.template}"')
    finally:
        await admin.close()
    try:
        yield lab.server.url(name)
    finally:
        for host in lab.hosts:
            lab.network.restore(host)
        admin = await asyncpg.connect(lab.server.url())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


class HostsFleet(ProcessFleet):
    """``bgagents`` processes inside the hosts of one test, each logging to its own file."""

    tail_lines = 12
    poll_interval = 0.2

    def __init__(self, network: Network, env: dict[str, str], logs: Path) -> None:
        super().__init__(env, logs)
        self.network = network

    def start(self, host: Host, *args: str) -> subprocess.Popen[bytes]:
        label = f"{host.hostname}-{'-'.join(args)[:60]}"
        return self.spawn(label, args, functools.partial(self.network.popen, host))


@pytest.fixture
def hosts_fleet(lab: Lab, lab_db: str, cli_env: dict[str, str], tmp_path: Path) -> Iterator[HostsFleet]:
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**cli_env, "DATABASE_URL": lab_db, "BGAGENTS_POOL_MIN": "1"}
    fleet = HostsFleet(lab.network, env, logs)
    try:
        yield fleet
    finally:
        for host in lab.hosts:  # a host the test left cut off stops cleanly instead of hanging
            lab.network.restore(host)
        fleet.stop_all()
