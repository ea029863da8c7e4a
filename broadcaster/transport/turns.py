"""Viewers answered from the parser that wait for their turn at the admission rate: one
queue and one timer for them all (``Turns``)."""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, Protocol

log = logging.getLogger("broadcaster.server")


class Waiting(Protocol):
    """A connection whose viewer waits for its turn (``wire.DirectWriteProtocol``)."""

    @property
    def transport(self) -> Any: ...

    def answer_later(self, opening: Any) -> None: ...


class Due(Protocol):
    """What it waits for: ``wait`` seconds (``fast.Opening``)."""

    @property
    def wait(self) -> float: ...


TURNS_TICK = 0.05
"""Viewers due within this many seconds of a turn of ``Turns`` are answered together."""


class Turns:
    """SSE viewers answered from the parser (``viewers/fastpath.py``) that wait for their turn
    at the admission rate, in the order the turns were given (so each is due no earlier
    than the one before it), answered by one timer for them all: no task, and no timer,
    per waiting viewer. A viewer that goes meanwhile is skipped (``_waiting``). As many
    wait as the rate's debt allows (``BROADCASTER_ADMIT_WAIT_SECONDS`` of turns)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: collections.deque[tuple[float, Waiting, Due]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, conn: Waiting, opening: Due) -> None:
        due = self._loop.time() + opening.wait
        self._queue.append((due, conn, opening))
        if self._timer is None:
            self._timer = self._loop.call_at(due, self._run)

    def _run(self) -> None:
        self._timer = None
        # What is due within a tick is due now: the herd is answered in batches, a
        # tick's worth at a time, not one viewer per turn of the loop (each answer then
        # wakes a viewer that sleeps, in the kernel, at the front-end's cost: about
        # twice a connect's send). And uvloop's timers count whole milliseconds (else
        # the timer, set for a moment ago, fires again and again until it is due).
        queue, now = self._queue, self._loop.time() + TURNS_TICK
        while queue and queue[0][0] <= now:
            _, conn, opening = queue.popleft()
            try:
                conn.answer_later(opening)
            except Exception:
                log.exception("answering a viewer after its turn failed")
                conn.transport.close()
        if queue:
            self._timer = self._loop.call_at(queue[0][0], self._run)
