"""The alert machinery shared by the heartbeat and performance agents.

An alert is keyed by a fingerprint of its rule and labels, so the same
condition never opens two alerts. Each evaluation hands :class:`AlertBook` the
conditions that hold now; the book opens them as ``pending``, fires them once
they held for the rule's ``for`` duration, and resolves the ones that no longer
hold. Notifications (an event on the ``alerts`` channel, and a webhook POST in
Alertmanager's JSON shape when configured) are skipped for silenced and
inhibited alerts; an unacknowledged firing alert is re-notified every
``repeat_interval``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from bus import alerts
from bus.client import Bus

logger = logging.getLogger(__name__)


def fingerprint(rule: str, labels: dict[str, str]) -> str:
    """Stable id of a rule and its labels."""
    text = json.dumps({"rule": rule, "labels": labels}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Condition:
    """A rule that holds right now for some labels."""

    rule: str
    labels: dict[str, str]
    severity: str
    summary: str
    hold_for: float
    value: float | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule, self.labels)


def matches(matchers: dict[str, Any], labels: dict[str, Any]) -> bool:
    """Alertmanager-style equality matchers: every matcher label must be equal."""
    return all(k in labels and str(labels[k]) == str(v) for k, v in matchers.items())


@dataclass
class AlertBook:
    """Keeps ``bg.alerts`` in step with the conditions of a set of rules."""

    bus: Bus
    rules: tuple[str, ...]
    webhook_url: str | None = None
    repeat_interval: float = 3600.0
    source: str = "bgagents"
    _deliveries: set[asyncio.Future[None]] = field(default_factory=set, repr=False)

    async def evaluate(self, holding: list[Condition], inhibited: set[str] | None = None) -> None:
        """Open, fire and resolve alerts so they match ``holding``."""
        inhibited = inhibited or set()
        pool = self.bus.pool
        open_alerts = {r["fingerprint"]: r for r in await alerts.open_alerts(pool, self.rules)}
        silences = await alerts.active_silences(pool)
        now = datetime.now().astimezone()
        seen = set()
        for cond in holding:
            seen.add(cond.fingerprint)
            alert = open_alerts.get(cond.fingerprint)
            if alert is None:
                alert = await alerts.open_alert(
                    pool,
                    cond.fingerprint,
                    cond.rule,
                    cond.labels,
                    cond.severity,
                    cond.summary,
                    cond.value,
                )
                logger.info("alert pending: %s %s", cond.rule, cond.labels)
            if alert["state"] == "pending" and now - alert["started_at"] >= timedelta(seconds=cond.hold_for):
                alert = await alerts.fire(pool, alert["id"]) or alert
                logger.warning("alert firing: %s", cond.summary)
                await self._notify(alert, silences, cond.fingerprint in inhibited)
            elif alert["state"] == "firing" and self._repeat_due(alert, now):
                await self._notify(alert, silences, cond.fingerprint in inhibited)
        for fp, alert in open_alerts.items():
            if fp not in seen:
                resolved = await alerts.resolve(pool, alert["id"])
                if resolved is not None and alert["state"] == "firing":
                    logger.info("alert resolved: %s", alert["summary"])
                    await self._notify(resolved, silences, False)

    def _repeat_due(self, alert: dict[str, Any], now: datetime) -> bool:
        acked = alert["acked_at"] is not None and (
            alert["ack_expires_at"] is None or alert["ack_expires_at"] > now
        )
        last = alert["last_notified_at"]
        return not acked and last is not None and now - last >= timedelta(seconds=self.repeat_interval)

    async def _notify(self, alert: dict[str, Any], silences: list[dict[str, Any]], inhibited: bool) -> None:
        labels = alert["labels"]
        silenced = any(matches(s["matchers"], {**labels, "alertname": alert["rule"]}) for s in silences)
        payload = {
            "id": alert["id"],
            "rule": alert["rule"],
            "state": alert["state"],
            "labels": labels,
            "severity": alert["severity"],
            "summary": alert["summary"],
            "silenced": silenced,
            "inhibited": inhibited,
        }
        await self.bus.publish("alerts", payload, source=self.source)
        await alerts.mark_notified(self.bus.pool, alert["id"])
        if silenced or inhibited or not self.webhook_url:
            return
        task = asyncio.ensure_future(self._post_webhook(alert))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _post_webhook(self, alert: dict[str, Any]) -> None:
        """POST Alertmanager's webhook shape, retrying with backoff."""
        body = {
            "version": "4",
            "status": "resolved" if alert["state"] == "resolved" else "firing",
            "receiver": "bgagents",
            "groupLabels": {"alertname": alert["rule"]},
            "commonLabels": {**alert["labels"], "alertname": alert["rule"]},
            "commonAnnotations": {"summary": alert["summary"]},
            "alerts": [
                {
                    "status": "resolved" if alert["state"] == "resolved" else "firing",
                    "labels": {**alert["labels"], "alertname": alert["rule"], "severity": alert["severity"]},
                    "annotations": {"summary": alert["summary"]},
                    "startsAt": alert["started_at"].isoformat(),
                    "endsAt": alert["resolved_at"].isoformat() if alert["resolved_at"] else None,
                    "fingerprint": alert["fingerprint"],
                }
            ],
        }
        assert self.webhook_url is not None
        await deliver(self.webhook_url, body, what=f"alert {alert['id']}")


async def deliver(
    url: str, body: dict[str, Any], *, what: str = "alert", attempts: int = 5, first_delay: float = 1.0
) -> bool:
    """POST ``body`` to the webhook ``url``, retrying with backoff; whether it was delivered.

    Redirects are not followed (the body would go to wherever the receiver
    points): a 3xx is a failed delivery, logged with where it pointed, and not
    retried, since the same URL would answer the same.
    """
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                session.post(url, json=body, allow_redirects=False) as resp,
            ):
                if resp.status < 300:
                    return True
                if resp.status < 400:
                    logger.error(
                        "webhook for %s not delivered: the receiver answered HTTP %d, a redirect to %s; "
                        "redirects are not followed, so set the webhook to the final URL",
                        what,
                        resp.status,
                        resp.headers.get("Location", "(no Location)"),
                    )
                    return False
                reason = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
        logger.warning("webhook for %s failed (attempt %d): %s", what, attempt, reason)
        if attempt < attempts:
            await asyncio.sleep(delay)
            delay *= 2
    return False
