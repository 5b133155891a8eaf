"""The supervisor restarts a crashed agent with backoff, and stops agents gracefully."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from agents.runtime.agent import Agent
from agents.runtime.supervisor import Supervisor
from bus.client import Bus
from tests.waiting import eventually


class Flaky(Agent):
    """Crashes on its first run_once, then works."""

    name = "flaky"
    runs = 0
    setups = 0

    @dataclass
    class Config(Agent.Config):
        interval: float = 0.05
        heartbeat_interval: float = 0.2

    async def setup(self) -> None:
        Flaky.setups += 1

    async def run_once(self) -> None:
        Flaky.runs += 1
        if Flaky.runs == 1:
            raise RuntimeError("boom")


async def test_a_crashed_agent_is_restarted_and_stops_cleanly(db_url: str, settings_for) -> None:
    async with Bus.connect(settings_for(db_url)) as bus:
        supervisor = Supervisor(bus, [Flaky(bus)], max_backoff=0.5)
        running = asyncio.create_task(supervisor.run())
        await eventually(lambda: Flaky.runs >= 3, timeout=15, what="the crashed agent restarted and running")
        assert Flaky.setups == 2  # one crash, one restart
        rows = await bus.pool.fetch("select status from bg.agents where name = 'flaky' order by started_at")
        assert [r["status"] for r in rows] == ["stopped", "running"]
        supervisor.stop()
        await asyncio.wait_for(running, 15)
        statuses = await bus.pool.fetch("select status from bg.agents where name = 'flaky'")
        assert {r["status"] for r in statuses} == {"stopped"}
