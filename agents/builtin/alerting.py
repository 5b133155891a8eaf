"""The alert machinery shared by the heartbeat and performance agents.

An alert is keyed by a fingerprint of its rule and labels, so the same
condition never opens two alerts. Each evaluation hands :class:`AlertBook` the
conditions that hold now; the book opens them as ``pending``, fires them once
they held for the rule's ``for`` duration, and resolves the ones that no longer
hold. Notifications (an event on the ``alerts`` channel, and a webhook POST in
Alertmanager's JSON shape when configured) are skipped for silenced and
inhibited alerts; an unacknowledged firing alert is re-notified every
``repeat_interval``.

With an Alertmanager configured, :class:`AlertmanagerPush` also pushes the
firing alerts to its ``/api/v2/alerts`` as Prometheus does: re-sent every
``resend`` seconds while they fire, each time valid for four more resends
(``endsAt``), so Alertmanager resolves them by itself if this agent stops; a
resolved alert is sent once more with its real ``endsAt``. Deliveries run in the
background, are logged and retried, and never follow a redirect.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import time
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


def silenced_by(silences: list[dict[str, Any]], alert: dict[str, Any]) -> bool:
    """Whether one of the active silences matches the alert's labels and rule."""
    labels = {**alert["labels"], "alertname": alert["rule"]}
    return any(matches(s["matchers"], labels) for s in silences)


@dataclass
class AlertmanagerPush:
    """Pushes firing alerts to an Alertmanager's ``/api/v2/alerts``, re-sent while firing, then resolved.

    ``push`` is called after every evaluation with the alerts firing (and not
    silenced or inhibited) and those resolved just now. Firing alerts go out
    when new or every ``resend`` seconds; resolved ones until one delivery
    succeeds (Alertmanager ends them by ``endsAt`` anyway if it never does).
    One delivery runs at a time, in the background; what it could not deliver
    goes out with the next push.
    """

    url: str
    resend: float = 60.0
    source: str = "bgagents"
    host: str = field(default_factory=socket.gethostname)
    attempts: int = 3
    _sent: dict[str, float] = field(default_factory=dict, repr=False)
    _resolved: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _delivery: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        """The alerts API under ``url`` (which may already name it)."""
        base = self.url.rstrip("/")
        return base if base.endswith("/api/v2/alerts") else f"{base}/api/v2/alerts"

    def push(self, firing: list[dict[str, Any]], resolved: list[dict[str, Any]]) -> None:
        """Send what is due, in the background: new or re-send-due firing alerts and pending resolves."""
        for alert in resolved:
            self._sent.pop(alert["fingerprint"], None)
            self._resolved[alert["fingerprint"]] = alert
        firing_now = {a["fingerprint"] for a in firing}
        for fp in list(self._sent):
            if fp not in firing_now:  # silenced or inhibited since: it lapses by its endsAt
                del self._sent[fp]
        if self._delivery is not None and not self._delivery.done():
            return
        now = time.monotonic()
        due = [a for a in firing if now - self._sent.get(a["fingerprint"], -1e18) >= self.resend]
        if not due and not self._resolved:
            return
        ending = list(self._resolved.values())
        for alert in due:
            self._sent[alert["fingerprint"]] = now
        body = [self.payload(a) for a in due + ending]
        self._delivery = asyncio.ensure_future(self._deliver(body, due, ending))

    async def wait(self) -> None:
        """Wait for the delivery in flight, if any (for shutdown and tests)."""
        if self._delivery is not None:
            await asyncio.shield(self._delivery)

    def payload(self, alert: dict[str, Any]) -> dict[str, Any]:
        """One alert in the shape of Alertmanager's API v2 (``postableAlert``)."""
        labels = {"agent": self.source, "host": self.host}
        labels.update({str(k): str(v) for k, v in alert["labels"].items()})
        labels.update({"alertname": alert["rule"], "severity": alert["severity"]})
        started = alert["fired_at"] or alert["started_at"]
        if alert["state"] == "resolved":
            ends = alert["resolved_at"] or datetime.now().astimezone()
        else:
            ends = datetime.now().astimezone() + timedelta(seconds=4 * self.resend)
        value = "" if alert["value"] is None else f", value {alert['value']:g}"
        description = (
            f"{alert['summary']} (bgagents alert {alert['id']}, rule {alert['rule']}{value}, "
            f"pending since {alert['started_at'].isoformat()}, reported by {self.source} on {self.host})"
        )
        return {
            "labels": labels,
            "annotations": {"summary": alert["summary"], "description": description},
            "startsAt": started.isoformat(),
            "endsAt": ends.isoformat(),
        }

    async def _deliver(
        self, body: list[dict[str, Any]], due: list[dict[str, Any]], ending: list[dict[str, Any]]
    ) -> None:
        try:
            what = f"{len(body)} alert(s) at {self.endpoint}"
            delivered = await deliver(
                self.endpoint, body, what=what, attempts=self.attempts, receiver="Alertmanager"
            )
        except Exception:  # never let a delivery bug take the agent down
            logger.exception("pushing alerts to Alertmanager at %s failed", self.endpoint)
            delivered = False
        if delivered:
            for alert in ending:
                if self._resolved.get(alert["fingerprint"]) is alert:
                    del self._resolved[alert["fingerprint"]]
            return
        for alert in due:  # retried at the next push
            self._sent.pop(alert["fingerprint"], None)


@dataclass
class AlertBook:
    """Keeps ``bg.alerts`` in step with the conditions of a set of rules."""

    bus: Bus
    rules: tuple[str, ...]
    webhook_url: str | None = None
    repeat_interval: float = 3600.0
    source: str = "bgagents"
    alertmanager: AlertmanagerPush | None = None
    _deliveries: set[asyncio.Future[None]] = field(default_factory=set, repr=False)

    async def evaluate(self, holding: list[Condition], inhibited: set[str] | None = None) -> None:
        """Open, fire and resolve alerts so they match ``holding``."""
        inhibited = inhibited or set()
        pool = self.bus.pool
        open_alerts = {r["fingerprint"]: r for r in await alerts.open_alerts(pool, self.rules)}
        silences = await alerts.active_silences(pool)
        now = datetime.now().astimezone()
        seen = set()
        firing: list[dict[str, Any]] = []
        resolved_now: list[dict[str, Any]] = []
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
            if alert["state"] == "firing" and not (
                cond.fingerprint in inhibited or silenced_by(silences, alert)
            ):
                firing.append(alert)
        for fp, alert in open_alerts.items():
            if fp not in seen:
                resolved = await alerts.resolve(pool, alert["id"])
                if resolved is not None and alert["state"] == "firing":
                    logger.info("alert resolved: %s", alert["summary"])
                    await self._notify(resolved, silences, False)
                    resolved_now.append(resolved)
        if self.alertmanager is not None:
            self.alertmanager.push(firing, resolved_now)

    def _repeat_due(self, alert: dict[str, Any], now: datetime) -> bool:
        acked = alert["acked_at"] is not None and (
            alert["ack_expires_at"] is None or alert["ack_expires_at"] > now
        )
        last = alert["last_notified_at"]
        return not acked and last is not None and now - last >= timedelta(seconds=self.repeat_interval)

    async def _notify(self, alert: dict[str, Any], silences: list[dict[str, Any]], inhibited: bool) -> None:
        labels = alert["labels"]
        silenced = silenced_by(silences, alert)
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
    url: str,
    body: Any,
    *,
    what: str = "alert",
    attempts: int = 5,
    first_delay: float = 1.0,
    receiver: str = "webhook",
) -> bool:
    """POST ``body`` as JSON to ``url`` (webhook or Alertmanager), with retries; whether it got there.

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
                        "%s for %s not delivered: the receiver answered HTTP %d, a redirect to %s; "
                        "redirects are not followed, so set the %s to the final URL",
                        receiver,
                        what,
                        resp.status,
                        resp.headers.get("Location", "(no Location)"),
                        receiver,
                    )
                    return False
                reason = f"HTTP {resp.status} {(await resp.text(errors='replace'))[:300].strip()}".strip()
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
        logger.warning("%s for %s failed (attempt %d): %s", receiver, what, attempt, reason)
        if attempt < attempts:
            await asyncio.sleep(delay)
            delay *= 2
    return False
