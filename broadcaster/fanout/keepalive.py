"""Keepalives for viewers that are caught up, from one task for the whole process.

A caught-up viewer's task sleeps with no timer (``viewer.py``), and so does an idle
connection that follows many streams (``dashboard/feed.py``): its socket is written to by the
fan-out, and by this task when it has been silent for 15/16 of the interval. Each
such viewer has one entry in a heap, keyed by when it is next due; every 16th of the
interval the task pops the entries that are due. A viewer whose stream brought frames
meanwhile is put back for later, one that was silent gets ``: ping``. So a tick costs
the viewers that are due, not a scan of every open stream, which every other viewer
would wait for.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable
from typing import Protocol

from broadcaster.core import contain

log = logging.getLogger("broadcaster.hub")


class Pinged(Protocol):
    """What this task pings: a viewer (``Subscription``), or a connection that follows
    many streams (``mux.Connection``)."""

    ping_at: float | None
    """When this task checks it next (None: not scheduled)."""
    direct: Callable[[bytes], bool] | None
    """Its socket while its task sleeps; None while the task is awake (it pings itself)."""

    def silent_since(self) -> float:
        """Loop time its socket last got frames or a ping."""
        ...

    def ping(self, now: float) -> None:
        """``: ping``, straight to the socket, or else through its task."""
        ...


CHUNK = 500
"""Viewers pinged before the loop runs anything else: viewers that connected together fall
due together, and 10,000 pings in one go would hold every live event back meanwhile."""


class Keepalive:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.due_after = interval * 15 / 16
        """Silence after which a viewer is pinged; at most ``interval`` with the tick."""
        self._heap: list[tuple[float, int, Pinged]] = []
        self._order = itertools.count()  # ties: never compare two subscriptions

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, sub: Pinged, since: float) -> None:
        """Check ``sub`` once it has been silent ``due_after`` seconds from ``since``
        (one entry per viewer: a later call while one is pending changes nothing)."""
        if sub.ping_at is None:
            sub.ping_at = since + self.due_after
            heapq.heappush(self._heap, (sub.ping_at, next(self._order), sub))

    async def run(self) -> None:
        """Tick every 16th of the interval until cancelled. A tick that raises (a viewer's
        ping did: it is not scheduled again) is logged, and the next tick goes on with
        the viewers still due."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval / 16)
            now = loop.time()
            try:
                more = self.tick(now, CHUNK)
                while more:
                    await asyncio.sleep(0)  # live events go out between chunks
                    more = self.tick(now, CHUNK)
            except Exception:
                contain.loop_failed("hub-keepalive", log)

    def tick(self, now: float, limit: int | None = None) -> bool:
        """Ping the viewers due at ``now``; True if ``limit`` entries were taken and more
        are due."""
        heap = self._heap
        taken = 0
        while heap and heap[0][0] <= now:
            if limit is not None and taken >= limit:
                return True
            taken += 1
            at, _, sub = heapq.heappop(heap)
            if sub.ping_at != at:
                continue  # a stale entry
            sub.ping_at = None
            if sub.direct is None:
                continue  # its task is awake, or it left: it keeps its own time
            last = sub.silent_since()
            if last > at - self.due_after:
                self.schedule(sub, last)  # frames went out meanwhile
            else:
                sub.ping(now)
                if sub.direct is not None:
                    self.schedule(sub, now)
        return False
