"""Waking idle workers: one NOTIFY wakes one worker, and a timer wakes them at the next ``run_at``.

The ``bg_tasks`` trigger sends one NOTIFY per queue and statement, with the
queue's name as payload, or ``queue@epoch`` when the new tasks are delayed.
A :class:`QueueWaker` hands those to the idle workers of one queue in this
process without a thundering herd: a NOTIFY wakes one idle worker, not all of
them; a worker that then claims a full batch wakes the next, so a burst fans
out while a trickle doesn't make every worker run an empty claim. The waker
also remembers when the next delayed task is due (from ``queue@epoch`` and
from local retries), so an idle worker sleeps until then instead of waiting for
its poll interval; polling stays as the backstop for rows that came without a
NOTIFY (expired leases, a lost notification).

:class:`Wakers` keeps one waker per queue for one notifier; the :class:`Bus`
owns it, so every worker of a queue in that process shares it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from bus.notifier import Notifier
from bus.waiting import wait_event

TASKS_CHANNEL = "bg_tasks"
"""The channel that the ``bg.tasks`` trigger notifies."""


class QueueWaker:
    """Wakes one queue's idle workers in this process, one at a time or all at once."""

    def __init__(self) -> None:
        self._idle: list[asyncio.Event] = []
        self._pending = False
        self.empty = False
        """The last claim found no more ready tasks."""
        self.next_due: float | None = None
        """When (epoch seconds) the next delayed task becomes runnable, if known."""

    def attach(self, notifier: Notifier, queue: str) -> Callable[[], None]:
        """Follow ``queue``'s NOTIFYs on ``notifier`` (and its reconnects); returns the undo."""

        def route(payload: str) -> None:
            if payload.partition("@")[0] == queue:
                self.on_notify(payload)

        unlisten = notifier.listen(TASKS_CHANNEL, route)
        unhook = notifier.on_reconnect(self.wake_all)

        def detach() -> None:
            unlisten()
            unhook()

        return detach

    def on_notify(self, payload: str) -> None:
        """Handle one ``queue`` or ``queue@epoch`` payload."""
        _, at, due = payload.partition("@")
        if at:
            with contextlib.suppress(ValueError):
                self.note_due(float(due))
        else:
            self.wake_one()

    def note_due(self, when: float) -> None:
        """A task becomes runnable at ``when`` (epoch seconds)."""
        if self.next_due is None or when < self.next_due:
            self.next_due = when
            self.wake_all()  # idle workers recompute how long to sleep

    def wake_one(self) -> None:
        """Wake one idle worker, or the next one to go idle."""
        self.empty = False
        if self._idle:
            self._idle.pop(0).set()
        else:
            self._pending = True

    def wake_all(self) -> None:
        """Wake every idle worker (and the next one to go idle)."""
        self.empty = False
        idle, self._idle = self._idle, []
        for event in idle:
            event.set()
        self._pending = True

    def take_pending(self) -> bool:
        """Whether a wake-up came while no worker was idle; clears it."""
        pending, self._pending = self._pending, False
        return pending

    def _due_now(self) -> bool:
        """Whether the next delayed task is due; if so, forget it and look again."""
        if self.next_due is None or self.next_due > time.time():
            return False
        self.next_due = None
        self.empty = False
        return True

    async def wait(self, timeout: float) -> bool:
        """Sleep until woken, or ``timeout`` seconds, or the next due task.

        Returns True when a delayed task fell due (look in the table for the next one).
        """
        if self._due_now():
            return True
        if self.next_due is not None:
            timeout = min(timeout, self.next_due - time.time() + 0.001)
        event = asyncio.Event()
        self._idle.append(event)
        try:
            await wait_event(event, timeout)
        finally:
            with contextlib.suppress(ValueError):
                self._idle.remove(event)
        return self._due_now()


class Wakers:
    """One :class:`QueueWaker` per queue, fed by one notifier; closed with its owner."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier
        self._by_queue: dict[str, QueueWaker] = {}
        self._undo: list[Callable[[], None]] = []

    def get(self, queue: str) -> QueueWaker:
        """The shared waker of ``queue``, listening from its first use."""
        waker = self._by_queue.get(queue)
        if waker is None:
            waker = self._by_queue[queue] = QueueWaker()
            self._undo.append(waker.attach(self._notifier, queue))
        return waker

    def close(self) -> None:
        """Stop following the notifier (idempotent)."""
        undo, self._undo = self._undo, []
        for u in undo:
            u()
        self._by_queue.clear()
