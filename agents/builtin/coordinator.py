"""AgentCoordinator: the registry's keeper and the one leader among replicas.

Several coordinators may run; the one holding the ``coordinator`` lease row in
``bg.leases`` is the leader. It renews the lease every interval, and when it
dies the lease expires and a standby takes over within ``lease + interval``
seconds. The leader marks instances whose beats stopped as ``dead`` (desired
versus actual state), forgets dead and stopped instances after a while, and
runs maintenance: retention of events, tasks, heartbeats, metrics and alert
history, rescue of dead leases, and a periodic ``ANALYZE`` of hot tables.
Restarting crashed processes is the supervisor's or Procfile runner's job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from agents.runtime.agent import Agent
from bus import agents as instances
from bus import maintenance, retention

ROLE = "coordinator"


class AgentCoordinator(Agent):
    name = "coordinator"
    kind = "builtin"

    @dataclass
    class Config(Agent.Config):
        interval: float = 2.0
        lease: float = 6.0
        dead_after: float = 30.0
        deregister_after: float = 3600.0
        heartbeat_retention_days: float = 30.0
        metrics_retention_days: float = 7.0
        alert_retention_days: float = 30.0
        maintenance_every: float = 300.0
        analyze_every: float = 600.0

    leader: str | None = None
    _last_maintenance = 0.0
    _last_analyze = 0.0

    @property
    def is_leader(self) -> bool:
        return self.leader == self.instance_id

    def status_note(self) -> str | None:
        if self.leader is None:
            return None
        return "leader" if self.is_leader else f"standby (leader: {self.leader})"

    async def run_once(self) -> None:
        cfg = self.config
        was = self.leader
        self.leader = await instances.take_lease(self.bus.pool, ROLE, self.instance_id, cfg.lease)
        if self.leader != was:
            self.log.info("leader is now %s%s", self.leader, " (this instance)" if self.is_leader else "")
            await instances.set_status(self.bus.pool, self.instance_id, "running", self.status_note())
            if self.is_leader:
                await self.publish("coordinator", {"leader": self.instance_id})
        if not self.is_leader:
            return
        for row in await instances.mark_dead(self.bus.pool, cfg.dead_after):
            self.log.warning("%s on %s stopped beating: marked dead", row["name"], row["host"])
        await instances.deregister_dead(self.bus.pool, cfg.deregister_after)
        now = time.monotonic()
        if now - self._last_maintenance >= cfg.maintenance_every:
            self._last_maintenance = now
            await self.maintain()
        if now - self._last_analyze >= cfg.analyze_every:
            self._last_analyze = now
            await retention.analyze_hot_tables(self.bus.pool)

    async def maintain(self) -> None:
        """Retention of every table that grows, and rescue of dead leases."""
        cfg = self.config
        pool = self.bus.pool
        await maintenance.run_once(pool, self.bus.settings)
        await retention.prune_heartbeats(pool, timedelta(days=cfg.heartbeat_retention_days))
        await retention.prune_metrics(pool, timedelta(days=cfg.metrics_retention_days))
        await retention.prune_alerts(pool, timedelta(days=cfg.alert_retention_days))

    async def teardown(self) -> None:
        if self.is_leader:  # hand over at once instead of waiting for the lease to expire
            await instances.release_lease(self.bus.pool, ROLE, self.instance_id)
