"""AgentCoordinator: the registry's keeper and the one leader among replicas.

Several coordinators may run; the one holding the ``coordinator`` lease row in
``bg.leases`` is the leader. It renews the lease every interval, and when it
dies the lease expires and a standby takes over within ``lease + interval``
seconds. The leader marks instances whose beats stopped as ``dead`` (desired
versus actual state), forgets dead and stopped instances after a while, and
runs maintenance: retention of events, tasks, heartbeats, metrics and alert
history, rescue of dead leases, and a periodic ``ANALYZE`` of hot tables.
Restarting crashed processes is the supervisor's or Procfile runner's job.

With ``BGAGENTS_BACKUP_DIR`` set, the leader also writes a backup there every
``BGAGENTS_BACKUP_INTERVAL_HOURS`` (named ``bg-<UTC time>.dump``, counted from
the newest one in the folder, so a restart or a new leader keeps the rhythm)
and keeps the newest ``BGAGENTS_BACKUP_KEEP``. The backup runs in the
background, so lease renewals go on meanwhile; a failure is logged and tried
again one interval later, and never stops the coordinator. An interval of 0
turns scheduled backups off.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import timedelta

from agents.runtime.agent import Agent
from bus import agents as instances
from bus import backup, maintenance, retention

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
    _backup: asyncio.Task[None] | None = None
    _backup_failed_at: float | None = None

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
        if self._backup_due():
            self._backup = asyncio.create_task(self._scheduled_backup(), name="coordinator-backup")

    def _backup_due(self) -> bool:
        """Whether the leader should start a scheduled backup now."""
        settings = self.bus.settings
        if settings.backup_dir is None or settings.backup_interval_hours <= 0:
            return False
        if self._backup is not None and not self._backup.done():
            return False
        interval = settings.backup_interval_hours * 3600
        now = time.time()
        if self._backup_failed_at is not None and now - self._backup_failed_at < interval:
            return False
        newest = backup.newest_backup_time(settings.backup_dir)
        return newest is None or now - newest.timestamp() >= interval

    async def _scheduled_backup(self) -> None:
        """One scheduled backup; a failure is logged, and the next try waits an interval."""
        settings = self.bus.settings
        assert settings.backup_dir is not None
        try:
            path = await backup.backup_to_folder(settings, settings.backup_dir, settings.backup_keep)
        except Exception as exc:
            self._backup_failed_at = time.time()
            self.log.warning(
                "scheduled backup into %s failed (trying again in %g h): %s",
                settings.backup_dir,
                settings.backup_interval_hours,
                exc,
            )
            return
        self._backup_failed_at = None
        self.log.info("scheduled backup written to %s", path)

    async def maintain(self) -> None:
        """Retention of every table that grows, and rescue of dead leases."""
        cfg = self.config
        pool = self.bus.pool
        await maintenance.run_once(pool, self.bus.settings)
        await retention.prune_heartbeats(pool, timedelta(days=cfg.heartbeat_retention_days))
        await retention.prune_metrics(pool, timedelta(days=cfg.metrics_retention_days))
        await retention.prune_alerts(pool, timedelta(days=cfg.alert_retention_days))

    async def teardown(self) -> None:
        if self._backup is not None and not self._backup.done():
            self._backup.cancel()  # pg_dump is killed and its partial file removed
            with contextlib.suppress(asyncio.CancelledError):
                await self._backup
        if self.is_leader:  # hand over at once instead of waiting for the lease to expire
            await instances.release_lease(self.bus.pool, ROLE, self.instance_id)
