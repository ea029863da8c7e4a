"""What a hub is told (``HubConfig``): buffers, keepalives, checks; and its admission of
new viewers (``Admission``)."""

from __future__ import annotations

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
    seconds and waits its turn, and only past that is it turned away. 0: no limit."""

    __slots__ = ("_filled", "_tokens", "rate", "wait")

    def __init__(self, rate: float, wait: float) -> None:
        self.rate, self.wait = rate, wait
        self._tokens = rate
        self._filled = 0.0

    def take(self, now: float) -> float | None:
        """A turn: in this many seconds (0: now), or None, refused (nothing taken)."""
        rate = self.rate
        if rate <= 0:
            return 0.0
        tokens = min(rate, self._tokens + (now - self._filled) * rate)
        self._tokens, self._filled = tokens, now
        if tokens - 1 < -rate * self.wait:
            return None
        self._tokens = tokens - 1
        return max(0.0, (1 - tokens) / rate)
