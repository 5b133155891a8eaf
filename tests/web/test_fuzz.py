"""A property-based fuzz run of the whole JSON API and the SSE endpoint, from the OpenAPI description.

Schemathesis generates valid and invalid requests for every operation in
``web/openapi.yaml`` and sends them to a real server on 127.0.0.1 (on a real,
migrated and seeded database), once without a token, once with a token and its
bearer header, and once with a token but only the credentials schemathesis
makes up. Every response must match its documented status, content type,
headers and schema, and none may be a 5xx, except a 503 where it is the
documented answer of ``/api/health`` when the system is unhealthy (the seeded
firing alert makes it so). A stand-in ai-help agent (registered as running, with
a worker on its search queue that finds nothing) answers the AI routes, so they
are fuzzed past the "is ai-help running?" check. The SSE endpoint is not read
to its end: a 200 must be ``text/event-stream``, start with a ``hello`` and
stay open (or end with a ``reset`` or ``retry`` event); anything else is
checked like any response. The run is bounded: few examples per operation, no
deadline, and a timeout per operation.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bus import agents, ai, alerts
from bus import metrics as samples
from bus.client import Bus
from bus.config import Settings
from bus.worker import Task, Worker
from web.api.openapi import document
from web.app import create_app, server_options
from web.security import COOKIE, csrf_token

TOKEN = "fuzz-token-0123456789"

EXAMPLES = int(os.environ.get("BGAGENTS_FUZZ_EXAMPLES", "25"))
"""Generated cases per operation and mode; raise it (and set BGAGENTS_FUZZ_RANDOM=1) for a longer hunt."""

RANDOM = os.environ.get("BGAGENTS_FUZZ_RANDOM") == "1"
"""Whether to draw new cases on every run; CI runs the same derandomized cases each time."""

CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

DOCUMENTED_503 = {"/api/health"}
"""Where a 503 is the documented answer here (unhealthy), not a failure."""


async def _no_hits(task: Task) -> list[Any]:
    """The stand-in ai-help agent's search: valid, and empty."""
    return []


schema = schemathesis.openapi.from_dict(document())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _seed(app_settings: Settings) -> None:
    """Put a few rows of every kind in, so the list responses are checked against their schemas."""
    bus = await Bus.open(app_settings, listen=False)
    try:
        pool = bus.pool
        await bus.queue.enqueue("fuzz", {"n": 1})
        await bus.queue.enqueue("fuzz", {"n": 2}, priority=3)
        await agents.register(pool, "fuzz-1", "fuzzer", "custom", "host1", 4242, "1.0", 5.0)
        alert = await alerts.open_alert(pool, "fp-1", "fuzz_rule", {"agent": "fuzzer"}, "warning", "a test")
        await alerts.fire(pool, alert["id"])
        await alerts.add_silence(pool, {"agent": "other"}, "fuzz", "seeded", 3600)
        await samples.insert(pool, "host1", [samples.Sample("fuzzer", "fuzz-1", "cpu.percent", 12.5)])
        await bus.publish("fuzz", {"hello": "world"})
    finally:
        await bus.close()


class Server:
    """The real app on 127.0.0.1 in a thread of its own, for a blocking HTTP client."""

    def __init__(self, app_settings: Settings) -> None:
        self.settings = app_settings
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self.runner: web.AppRunner | None = None
        self.bus: Bus | None = None
        self.ai_worker: Worker | None = None
        self.ai_task: asyncio.Task[None] | None = None
        self.thread = threading.Thread(target=self._serve, name="fuzz-server", daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # handed to the test, which fails with it
            self.failure = exc
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()
        leftover = asyncio.all_tasks(self.loop)
        for task in leftover:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        self.loop.close()

    async def _start(self) -> None:
        await _seed(self.settings)
        self.bus = await Bus.open(self.settings)
        await agents.register(self.bus.pool, "fuzz-ai", ai.AGENT, "builtin", "host1", os.getpid(), "1.0", 5.0)
        await agents.set_status(self.bus.pool, "fuzz-ai", "running")
        self.ai_worker = self.bus.worker(ai.SEARCH_QUEUE, _no_hits)
        self.ai_task = asyncio.create_task(self.ai_worker.run())
        self.runner = web.AppRunner(create_app(self.settings), **server_options(self.settings))
        await self.runner.setup()
        await web.TCPSite(self.runner, self.settings.host, self.settings.port).start()

    async def _stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.ai_worker is not None and self.ai_task is not None:
            self.ai_worker.stop()
            await self.ai_task
        if self.bus is not None:
            await self.bus.close()

    def __enter__(self) -> str:
        self.thread.start()
        assert self.ready.wait(30), "the fuzz server did not start in 30 s"
        if self.failure is not None:
            raise self.failure
        return f"http://{self.settings.host}:{self.settings.port}"

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(15)


class Target(NamedTuple):
    """A served app: its base URL, the headers a bearer client and a signed-in browser send, the mode."""

    base_url: str
    headers: dict[str, str]
    browser: dict[str, str]
    mode: str


def _sign_in(base_url: str) -> dict[str, str]:
    """What a browser sends after ``POST /login``: the session cookie and the CSRF token."""
    resp = requests.post(
        f"{base_url}/login", data={"token": TOKEN, "next": "/"}, allow_redirects=False, timeout=10
    )
    assert resp.status_code == 303, resp.text
    return {"Cookie": f"{COOKIE}={resp.cookies[COOKIE]}", "X-CSRF-Token": csrf_token(TOKEN)}


@pytest.fixture(params=["open", "token", "token-unauthenticated"])
def target(
    request: pytest.FixtureRequest, db_url: str, settings_for: Callable[..., Settings]
) -> Iterator[Target]:
    """A served app without a token, or with one (sent as a bearer header, or as a browser signed in)."""
    env = {"BGAGENTS_HOST": "127.0.0.1", "BGAGENTS_PORT": str(_free_port())}
    if request.param != "open":
        env["BGAGENTS_TOKEN"] = TOKEN
    headers = {"Authorization": f"Bearer {TOKEN}"} if request.param == "token" else {}
    with Server(settings_for(db_url, **env)) as base_url:
        browser = _sign_in(base_url) if request.param == "token" else {}
        expected = 401 if request.param == "token-unauthenticated" else 200
        for sent in (headers, browser) if browser else (headers,):
            probe = requests.get(f"{base_url}/api/tasks", headers=sent, timeout=10)
            assert probe.status_code == expected, probe.text  # the mode is what it says
        yield Target(base_url, headers, browser, request.param)


SILENCE = 0.3
"""Seconds a stream must stay open after its ``hello`` (and any replay) to count as alive."""


def _stream(case: Any, base_url: str, headers: dict[str, str]) -> requests.Response:
    """Open the SSE endpoint without reading it to its end: an error body is read whole."""
    kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
    kwargs.pop("timeout", None)
    response = requests.request(**kwargs, stream=True, timeout=(5, 10))
    if response.status_code != 200:
        assert response.content is not None  # an error body is short: read it for the checks
    return response


def _events_until_quiet(response: requests.Response) -> tuple[set[str], bool]:
    """The event names a 200 stream sends until it has been quiet for SILENCE s, and whether it ended.

    A stream that ends on its own right after the ``hello`` without a ``reset``
    or ``retry`` event is the "200 and a silent close" that sends clients into
    a reconnect loop.
    """
    seen: set[str] = set()
    try:
        for line in response.iter_lines(chunk_size=1024):
            if line.startswith(b"event:"):
                seen.add(line.partition(b":")[2].strip().decode())
                if "hello" in seen and response.raw.connection is not None:
                    sock = response.raw.connection.sock
                    if sock is not None:
                        sock.settimeout(SILENCE)  # from now on, quiet means alive
    except requests.exceptions.ConnectionError:  # the read timed out: still open
        return seen, False
    return seen, True


def _check_stream(response: requests.Response, sent: str) -> None:
    assert response.headers["Content-Type"].startswith("text/event-stream"), sent
    seen, ended = _events_until_quiet(response)
    assert "hello" in seen, f"no hello event, got {sorted(seen)}: {sent}"
    assert not ended or seen & {"reset", "retry"}, (
        f"a 200 stream closed silently after {sorted(seen)}: {sent}"
    )


def _no_server_error(path: str, response: Any) -> None:
    status = response.status_code
    if status == 503 and path in DOCUMENTED_503:
        return
    assert status < 500, f"{status} {response.text[:500]!r}"


HEADER_TEXT = st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f")
"""What RFC 9110 lets a header value carry (VCHAR and obs-text); aiohttp's parser refuses the rest."""

CREDENTIALS = st.text(HEADER_TEXT, max_size=60) | st.sampled_from(
    [TOKEN[:-1], TOKEN + "x", TOKEN + "\xe9", "\xe9" * 8, TOKEN.upper()]
)
"""Made-up tokens and cookies (non-ASCII ones too), and near misses of the token."""


@pytest.mark.timeout(90)
@schema.parametrize()
@schema.given(credential=CREDENTIALS, as_cookie=st.booleans())
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzz(case: Any, target: Target, credential: str, as_cookie: bool) -> None:
    base_url, headers, browser, mode = target
    if mode == "token" and as_cookie:
        headers = browser
    elif mode == "token-unauthenticated":
        headers = (
            {"Cookie": f"{COOKIE}={credential}"} if as_cookie else {"Authorization": f"Bearer {credential}"}
        )
    path = case.operation.path
    if path == "/api/events":
        response = _stream(case, base_url, headers)
        try:
            _no_server_error(path, response)
            if response.status_code == 200:
                _check_stream(response, case.as_curl_command())
            else:
                case.validate_response(response, checks=CHECKS)
        finally:
            response.close()
        return
    response = case.call(base_url=base_url, headers=headers, timeout=30)
    _no_server_error(path, response)
    case.validate_response(response, checks=CHECKS)


@pytest.mark.parametrize("target", ["open"], indirect=True)
@pytest.mark.parametrize("cursor", ["08:1", "010:1", "1:09"])
def test_a_cursor_with_a_leading_zero_is_a_400(cursor: str, target: Target) -> None:
    """Found by this fuzz run: PostgreSQL reads xid8 ``010`` as octal and refuses ``08``, so such
    a cursor was taken, and the stream answered 200, sent its hello and closed without a word."""
    base_url, _, _, _ = target
    for sent in ({"headers": {"Last-Event-ID": cursor}}, {"params": {"after": cursor}}):
        response = requests.get(f"{base_url}/api/events", timeout=10, **sent)
        assert response.status_code == 400, response.text
        assert "cursor" in response.json()["error"]
