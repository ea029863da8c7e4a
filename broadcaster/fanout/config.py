"""What a hub is told (``HubConfig``): buffers, keepalives, checks; and its admission of
new viewers (``Admission``), at once while its event loop keeps up (``LoopLag``)."""

from __future__ import annotations

import asyncio
import math
import secrets
from dataclasses import dataclass

from broadcaster.core import sse


@dataclass(frozen=True, slots=True)
class HubConfig:
    viewer_buffer: int = 1024
    """Live events buffered per viewer before it falls back to reading Redis itself."""
    keepalive: float = 15.0
    """Most seconds of silence before a ``: ping`` comment (``keepalive.py``)."""
    quiet_check: float = 60.0
    """A watched stream that is not ended and has heard nothing for this long is checked
    against the log (a lost last message would otherwise go unnoticed)."""
    probe: float = 5.0
    """How often each pub/sub connection is pinged and its channels' homes checked."""
    admit_per_second: float = 0.0
    """New viewers admitted per second (a burst of as many): ``admit``. 0: no limit."""
    admit_wait: float = 0.0
    """Most seconds a new viewer waits for its turn before it is refused (``admit``)."""
    admit_lag: float = 0.0
    """While the event loop runs its timers less than this many seconds late, a new viewer
    is admitted at once, whatever the rate (``LoopLag``). 0: every viewer takes its turn."""
    linger: float = 0.0
    """Seconds a stream stays watched after its last viewer left: the next long-poll of a
    Durable Streams reader, or a viewer reconnecting, then finds it subscribed and its
    position known, instead of subscribing again and reading the log twice."""
    drain_retry_ms: int = 1000
    """A draining front-end's ``retry:``, at least (``farewell``)."""
    drain_window_ms: int = 10000
    """Each response's drain ``retry:`` is ``drain_retry_ms`` plus a random share of this
    (uniform, whole ms): the viewers of a front-end that drains come back spread over it."""

    def farewell(self) -> bytes:
        """The last bytes of one response when the hub drains (``sse.farewell``)."""
        return sse.farewell(self.drain_retry_ms + secrets.randbelow(self.drain_window_ms + 1))


class Admission:
    """A token bucket of ``rate`` new viewers a second (a burst of as many), whose debt
    may run to ``wait`` seconds: a herd reconnecting after a front-end died is spread over
    seconds and waits its turn, and only past that is it turned away. 0: no limit.

    The rate paces viewers only while the front-end is ``behind`` (``LoopLag``): else a
    viewer is admitted at once, as fast as the loop takes them, and still charged to the
    bucket (down to empty, never into debt), so that the rest of a herd the loop falls
    behind with waits at the rate from there on, not after a fresh burst."""

    __slots__ = ("_filled", "_tokens", "rate", "wait")

    def __init__(self, rate: float, wait: float) -> None:
        self.rate, self.wait = rate, wait
        self._tokens = rate
        self._filled = 0.0

    def take(self, now: float, behind: bool = True) -> float | None:
        """A turn: in this many seconds (0: now), or None, refused (nothing taken)."""
        rate = self.rate
        if rate <= 0:
            return 0.0
        tokens = min(rate, self._tokens + (now - self._filled) * rate)
        self._tokens, self._filled = tokens, now
        if not behind:
            self._tokens = max(min(tokens, 0.0), tokens - 1)  # a debt stays the waiters'
            return 0.0
        if tokens - 1 < -rate * self.wait:
            return None
        self._tokens = tokens - 1
        return max(0.0, (1 - tokens) / rate)


LAG_PERIOD = 0.025
"""Seconds between two timers of ``LoopLag``."""

LAG_QUIET = 1.0
"""Seconds without a new viewer after which ``LoopLag``'s timer stops (an idle front-end
wakes for nothing)."""


class LoopLag:
    """Whether the event loop is behind, while new viewers arrive: one timer every
    ``LAG_PERIOD``, which notes how late it ran (a loop that keeps up runs it in its next
    turn, all but on time). Behind while the last one ran ``limit`` late or more, or while
    the next is overdue by as much (a turn of the loop running long, now); and when not
    running (nothing known). The timer stops after ``LAG_QUIET`` seconds without a
    question, and the next question starts it again, answered as keeping up until the
    timer tells (a period and the limit at most: fewer viewers than the bucket's burst
    took at once before). No Redis, nothing per viewer: ``start``, ``stop``."""

    __slots__ = ("_asked", "_due", "_handle", "_late", "_loop", "limit")

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._late = math.inf
        self._due = self._asked = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None

    def behind(self, now: float) -> bool:
        self._asked = now
        if self._handle is None and self._loop is not None:  # the first in a while
            self._late = 0.0
            self._next(self._loop, now)
        return self._late >= self.limit or now - self._due >= self.limit

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Answer from now on, on ``loop`` (its timer starts at the first question)."""
        self._loop = loop

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._loop, self._late = None, math.inf

    def _next(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        self._due = now + LAG_PERIOD
        self._handle = loop.call_at(self._due, self._ran, loop)

    def _ran(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        self._late = now - self._due
        if now - self._asked < LAG_QUIET:
            self._next(loop, now)
        else:
            self._handle = None
