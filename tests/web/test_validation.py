"""Bad input gets a 400 whose JSON body names the parameter, on every route, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

HUGE = "99999999999999999999"
"""Beyond bigint."""

DEEP = "[" * 100000
"""Nested far beyond what json.loads can recurse."""


def nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


async def assert_names(resp: Any, param: str) -> None:
    assert resp.status == 400, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert param in body["error"], body


@pytest.mark.parametrize(
    ("method", "url", "param"),
    [
        ("GET", f"/api/tasks/{HUGE}", "id"),
        ("GET", "/api/tasks/%EF%BC%91%EF%BC%92", "id"),  # full-width digits
        ("POST", f"/api/tasks/{HUGE}/retry", "id"),
        ("POST", f"/api/tasks/{HUGE}/cancel", "id"),
        ("POST", f"/api/alerts/{HUGE}/ack", "id"),
        ("DELETE", f"/api/silences/{HUGE}", "id"),
        ("GET", "/api/tasks?limit=%EF%BC%91%EF%BC%92", "limit"),
        ("GET", f"/api/alerts?limit={HUGE}", "limit"),
        ("GET", "/api/tasks?queue=a%00b", "queue"),
        ("GET", "/api/metrics?metric=a%00b", "metric"),
        ("GET", "/api/metrics?metric=m&since=inf", "since"),
        ("GET", "/api/metrics?metric=m&since=1e308", "since"),
        ("GET", "/api/metrics?metric=m&since=nan", "since"),
        ("GET", "/api/metrics?metric=m&since=0001-01-01T00:00:00%2B05:00", "since"),
        ("GET", "/api/metrics?metric=" + "m" * 300, "metric"),
        ("GET", "/api/search?q=a%00b", "q"),
        ("GET", "/api/search?q=" + "x" * 1001, "q"),
        ("GET", "/api/search?q=x&k=%EF%BC%91", "k"),
        ("GET", "/api/alerts?state=firing&acked=true&x%00=1", "x"),
        ("GET", "/api/events?after=%EF%BC%91%EF%BC%92:3", "after"),
        ("GET", f"/api/events?after={HUGE}:1", "after"),
        ("GET", f"/api/events?after=1:{HUGE}", "after"),
        ("GET", "/api/events?after=08:1", "after"),  # PostgreSQL would read it as octal
        ("POST", "/api/agents/a%00b/command", "name"),
    ],
)
async def test_bad_url_parameters(client: TestClient, method: str, url: str, param: str) -> None:
    await assert_names(await client.request(method, url), param)


@pytest.mark.parametrize(
    ("url", "payload", "param"),
    [
        ("/api/agents/performance/command", {"command": 5}, "command"),
        ("/api/agents/performance/command", {"command": ["pause"]}, "command"),
        ("/api/help", {"question": 5}, "question"),
        ("/api/help", {"question": "a\x00b"}, "question"),
        ("/api/help", {"question": ["why?"]}, "question"),
        ("/api/alerts/1/ack", {"expires_in": []}, "expires_in"),
        ("/api/alerts/1/ack", {"expires_in": True}, "expires_in"),
        ("/api/alerts/1/ack", {"expires_in": 1e308}, "expires_in"),
        ("/api/alerts/1/ack", {"expires_in": -0.0}, "expires_in"),
        ("/api/alerts/1/ack", {"comment": 5}, "comment"),
        ("/api/alerts/1/ack", {"comment": "a\x00b"}, "comment"),
        ("/api/alerts/1/ack", {"by": {"who": "me"}}, "by"),
        ("/api/silences", {"matchers": "x"}, "matchers"),
        ("/api/silences", {"matchers": ["agent"]}, "matchers"),
        ("/api/silences", {"matchers": {"agent": 5}}, "matchers"),
        ("/api/silences", {"matchers": {"agent": "a\x00"}}, "matchers"),
        ("/api/silences", {"matchers": {"agent": "x"}, "duration": "inf"}, "duration"),
        ("/api/silences", {"matchers": {"agent": "x"}, "duration": {}}, "duration"),
        ("/api/silences", {"matchers": {"agent": "x"}, "by": ["me"]}, "by"),
        ("/api/silences", {"matchers": {"agent": "x"}, "comment": 1.5}, "comment"),
        ("/api/silences", {"matchers": {"agent": "x"}, "note": nested(100)}, "note"),
        ("/api/tasks/retry", {"queue": 5}, "queue"),
        ("/api/tasks/cancel", {"queue": "a\x00b"}, "queue"),
        ("/api/tasks/cancel", {"status": 5}, "status"),
    ],
)
async def test_bad_json_bodies(client: TestClient, url: str, payload: Any, param: str) -> None:
    await assert_names(await client.post(url, json=payload), param)


@pytest.mark.parametrize(
    ("url", "raw", "param"),
    [
        ("/api/tasks/cancel", DEEP, "body"),
        ("/api/silences", '{"matchers": ' + DEEP, "body"),
        ("/api/alerts/1/ack", '{"comment": "\\ud800"}', "comment"),
        ("/api/alerts/1/ack", '{"expires_in": 1e999}', "expires_in"),
        ("/api/tasks/cancel", "[1]", "body"),
    ],
)
async def test_bad_raw_json(client: TestClient, url: str, raw: str, param: str) -> None:
    resp = await client.post(url, data=raw, headers={"Content-Type": "application/json"})
    await assert_names(resp, param)


async def test_a_body_that_is_not_utf8(client: TestClient) -> None:
    resp = await client.post(
        "/api/tasks/cancel", data=b'{"queue": "\xff"}', headers={"Content-Type": "application/json"}
    )
    await assert_names(resp, "body")


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=no-such-charset", "application/x-www-form-urlencoded; charset=nope"],
)
async def test_a_body_in_an_unknown_charset(client: TestClient, content_type: str) -> None:
    resp = await client.post("/api/tasks/cancel", data=b"queue=q", headers={"Content-Type": content_type})
    await assert_names(resp, "body")


@pytest.mark.parametrize(
    ("url", "form", "param"),
    [
        ("/api/alerts/1/ack", {"comment": "a\x00b"}, "comment"),
        ("/api/alerts/1/ack", {"expires_in": "1e308"}, "expires_in"),
        ("/api/tasks/cancel", {"queue": "q\x00"}, "queue"),
        ("/api/silences", {"matchers": "agent=a\x00"}, "matchers"),
    ],
)
async def test_bad_form_fields(client: TestClient, url: str, form: dict[str, str], param: str) -> None:
    await assert_names(await client.post(url, data=form), param)


async def test_the_question_length_is_the_setting(make_client: Any) -> None:
    """``max_question_chars`` bounds ``/api/help`` before anything is queued (not a fixed 4000)."""
    client = await make_client(BGAGENTS_MAX_QUESTION_CHARS="10")
    await assert_names(await client.post("/api/help", json={"question": "why " * 10}), "question")


async def test_good_values_still_pass(client: TestClient) -> None:
    """The validators refuse what they should and nothing more."""
    assert (await client.get("/api/tasks?limit=5&queue=web")).status == 200
    assert (await client.get("/api/metrics?metric=m&since=0")).status == 200
    assert (await client.get("/api/metrics?metric=m&since=2026-01-01T00:00:00")).status == 200
    created = await client.post("/api/silences", json={"matchers": {"agent": "x"}, "duration": 60.5})
    assert created.status == 201
    assert (await client.post("/api/silences", data={"matchers": "agent=x, host=h1"})).status == 201
    assert (await client.get("/api/tasks/9223372036854775807")).status == 404
    body = json.dumps({"matchers": {"agent": "x"}, "note": nested(20)})
    resp = await client.post("/api/silences", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 201
