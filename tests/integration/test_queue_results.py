"""Results of any JSON shape survive the batched completion, and non-JSON ones become a repr."""

from __future__ import annotations

import asyncio

import pytest

from bus.client import Bus
from bus.worker import Task


@pytest.mark.parametrize(
    "result",
    [[{"a": 1}, {"b": 2}, {"c": 3}], [[1, 2], [3]], "text", 42, None, {"nested": {"list": [1, {"x": None}]}}],
)
async def test_results_keep_their_shape(db_url: str, settings_for, result: object) -> None:
    async def handler(task: Task) -> object:
        return result

    async with Bus.connect(settings_for(db_url)) as bus:
        worker = bus.worker("shapes", handler)
        running = asyncio.create_task(worker.run())
        try:
            task_id = await bus.queue.enqueue("shapes", {})
            assert await bus.queue.result(task_id, timeout=10) == result
        finally:
            worker.stop()
            await running


async def test_a_result_that_is_not_json_is_stored_as_its_repr(db_url: str, settings_for) -> None:
    async def handler(task: Task) -> object:
        return {1, 2}

    async with Bus.connect(settings_for(db_url)) as bus:
        worker = bus.worker("shapes", handler)
        running = asyncio.create_task(worker.run())
        try:
            task_id = await bus.queue.enqueue("shapes", {})
            assert await bus.queue.result(task_id, timeout=10) == {"repr": "{1, 2}"}
        finally:
            worker.stop()
            await running
