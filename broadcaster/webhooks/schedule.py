"""The retry schedule: exponential backoff with full jitter, for a bounded time (pure).

The wait after a delivery's n-th failed attempt is uniform in
``[0, min(max, base * 2**(n-1))]`` (full jitter: receivers that came back are not hit by
every delivery at once). The draw comes from a hash of the delivery and n, not from a
process's random state, so that every deliverer computes the same wait for the same
delivery: the schedule lives in Redis (an entry's delivery count and idle time), and
whichever deliverer looks at it next agrees on when it is due.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    base: float
    """Seconds: the ceiling of the first wait."""
    cap: float
    """Seconds: the ceiling of any wait."""
    total: float
    """Seconds after its event during which a delivery is retried; a failure after that
    puts it on the dead-letter list."""

    def wait(self, attempts: int, key: str) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt of delivery ``key``."""
        ceiling = min(self.cap, self.base * 2.0 ** min(max(attempts, 1) - 1, 64))
        digest = hashlib.sha256(f"{key}:{attempts}".encode()).digest()
        return ceiling * int.from_bytes(digest[:8], "big") / 2**64

    def exhausted(self, age: float) -> bool:
        """Whether a delivery whose event is ``age`` seconds old has had its time."""
        return age >= self.total

    def ceilings(self) -> list[float]:
        """The ceiling of each wait until ``total`` is reached by the ceilings alone: the
        schedule as documented (the real waits are at most these, half on average)."""
        out: list[float] = []
        while sum(out) < self.total:
            out.append(min(self.cap, self.base * 2.0 ** min(len(out), 64)))
        return out
