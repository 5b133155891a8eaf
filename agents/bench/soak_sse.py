"""The soak benchmark's SSE clients: aiohttp streams that resume by cursor after every disconnect.

A client records every event it is sent, in order, as the event's id and
cursor, and counts duplicates and out-of-order deliveries itself (it never
dedupes them away). After a disconnect it reconnects with ``Last-Event-ID``
set to the last cursor it got, as a browser does. :meth:`SseClient.stall`
makes it stop reading for a while, so the server must cut it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bus.events import parse_cursor

RECONNECT_S = 0.5
"""Seconds a client waits before reconnecting."""

STALL_RCVBUF = 16384
"""Receive buffer of a client that may stall, so the server's sends back up soon."""


def _small_buffer_socket(addr_info: Any) -> socket.socket:
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALL_RCVBUF)
    return sock


@dataclass
class Stall:
    """One stall: when it began and ended, and when the stream closed after it (cut off)."""

    began: float
    ended: float | None = None
    cut_at: float | None = None


@dataclass
class SseClient:
    """One SSE client of ``base`` on ``channel``, starting after ``cursor``."""

    name: str
    base: str
    channel: str
    cursor: str
    began: float
    small_buffer: bool = False
    ids: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    """Seconds from publish to arrival, per delivery."""
    arrivals: list[float] = field(default_factory=list)
    """Seconds into the run of each delivery."""
    seen: set[int] = field(default_factory=set)
    duplicates: int = 0
    out_of_order: int = 0
    resets: int = 0
    connects: int = 0
    refused: int = 0
    stalls: list[Stall] = field(default_factory=list)
    _stall_until: float = 0.0
    _last: tuple[int, int] = (0, 0)

    def stall(self, seconds: float) -> None:
        """Stop reading for ``seconds`` (the stream stays open; the server must cut it off)."""
        self._stall_until = time.monotonic() + seconds
        self.stalls.append(Stall(began=time.monotonic() - self.began))

    def record(self, cursor: str, data: str) -> None:
        """Note one delivery: its cursor and its `data:` JSON."""
        event = json.loads(data)
        event_id = int(event["id"])
        position = parse_cursor(cursor)
        if event_id in self.seen:
            self.duplicates += 1
        elif position <= self._last:
            self.out_of_order += 1
        self.seen.add(event_id)
        self.ids.append(event_id)
        self.latencies.append(time.time() - float(event["payload"]["t"]))
        self.arrivals.append(time.monotonic() - self.began)
        self._last = max(self._last, position)
        self.cursor = cursor

    async def _pause_if_stalled(self) -> None:
        pause = self._stall_until - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
            self.stalls[-1].ended = time.monotonic() - self.began

    async def _read(self, resp: aiohttp.ClientResponse) -> None:
        fields: dict[str, str] = {}
        async for raw in resp.content:
            await self._pause_if_stalled()
            line = raw.decode().rstrip("\r\n")
            if not line:
                if fields.get("event") == self.channel and "id" in fields:
                    self.record(fields["id"], fields.get("data", ""))
                elif fields.get("event") == "reset":
                    self.resets += 1
                fields = {}
            elif not line.startswith(":") and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value[1:] if value.startswith(" ") else value

    async def run(self, stop: asyncio.Event) -> None:
        """Stream until ``stop`` is set, reconnecting by cursor after every disconnect."""
        connector = aiohttp.TCPConnector(
            limit=0, socket_factory=_small_buffer_socket if self.small_buffer else None
        )
        timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_read=40)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            while not stop.is_set():
                url = f"{self.base}/api/events?channels={self.channel}"
                try:
                    async with session.get(url, headers={"Last-Event-ID": self.cursor}) as resp:
                        if resp.status != 200:
                            self.refused += 1
                        else:
                            self.connects += 1
                            await self._read(resp)
                except (aiohttp.ClientError, TimeoutError, ConnectionError):
                    pass
                await self._pause_if_stalled()
                stall = self.stalls[-1] if self.stalls else None
                if stall is not None and stall.ended is not None and stall.cut_at is None:
                    stall.cut_at = time.monotonic() - self.began
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RECONNECT_S)
