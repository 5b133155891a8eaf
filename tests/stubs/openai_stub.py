"""A small OpenAI-compatible server for tests: streaming chat completions and embeddings.

It records every request body, so tests assert on what the real ``openai``
client sent.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

RECORDED: web.AppKey[list[dict[str, Any]]] = web.AppKey("recorded", list)
WORDS: web.AppKey[list[str]] = web.AppKey("words", list)


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[RECORDED].append(body)
    words = request.app[WORDS]
    if not body.get("stream"):
        return web.json_response(
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(words)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
            }
        )
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)

    async def send(chunk: dict[str, Any]) -> None:
        await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())

    base = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
    for word in words:
        await send({**base, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
    await send({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    await send(
        {**base, "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}}
    )
    await resp.write(b"data: [DONE]\n\n")
    return resp


def make_app(words: list[str] | None = None) -> web.Application:
    """The stub; its chat answer is ``words`` streamed one by one (by default, one citing [1])."""
    app = web.Application()
    app[RECORDED] = []
    app[WORDS] = words or ["Agent ", "performance ", "is ", "down ", "[1]."]
    app.router.add_post("/v1/chat/completions", chat)
    return app
