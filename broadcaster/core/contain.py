"""Failures kept where they happen: what one viewer's delivery, one stream's data or one
round of a background loop raises is logged (a line per stream or loop and minute, not
per event), counted, and everything else goes on.

A background loop calls ``loop_failed`` from ``except Exception`` (never
``BaseException``: a cancel must still stop it), backs off (``BACKOFF``) and goes on;
``LOOP_ERRORS`` counts them. A loop that cannot reach Redis keeps an ``Outage``: doubling
waits up to ``OUTAGE_CAP``, logged when it starts, once a minute and when it ends;
``cancel_until_ended`` stops loops, even one a library let go on past its cancel. A
stored event that cannot be served is counted in ``MALFORMED`` (``malformed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Hashable, Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric

BACKOFF = 0.5
"""Seconds a loop waits after a round that raised, before the next (a bug that raises
every round then costs two log-free rounds a second, not a busy loop)."""

LOG_EVERY = 60.0
"""Seconds between two log lines about the same failure (the stream, the loop)."""


RECANCEL_SECONDS = 0.5
"""How long a cancelled loop may take to end before it is cancelled again."""


async def cancel_until_ended(tasks: Iterable[asyncio.Task[Any]], *, raising: bool = True) -> None:
    """Cancel ``tasks`` and wait for them to end, cancelling again those still running
    after ``RECANCEL_SECONDS``: Python 3.11's ``asyncio.wait_for`` drops a cancel that
    comes as the call it waits for finishes (redis-py waits so for every send and read
    with a timeout), and a loop that goes on after that would hold its stop for ever.
    What a task raised other than its cancel is raised here, or with ``raising=False``
    (a stop that must go on to its other steps) logged."""
    tasks = list(tasks)
    pending = set(tasks)
    for task in pending:
        task.cancel()
    while pending:
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)
        for task in pending:
            logging.getLogger("broadcaster.log").warning(
                "%s went on after it was cancelled; cancelling it again", task.get_name()
            )
            task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            if raising:
                await task
            elif task.exception() is not None:
                logging.getLogger("broadcaster.log").warning(
                    "%s ended with an error", task.get_name(), exc_info=task.exception()
                )


class Throttle:
    """At most one log line per key every ``every`` seconds, and how many were held back
    in between. Remembers the ``most`` keys seen last (older ones are forgotten, and
    would be logged again)."""

    def __init__(self, every: float = LOG_EVERY, most: int = 4096) -> None:
        self.every = every
        self.most = most
        self._seen: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def due(self, key: Hashable) -> int | None:
        """None: ``key`` was logged less than ``every`` seconds ago (this one is held back
        and counted); else log now, saying how many were held back since the last line."""
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.every:
            self._seen[key] = (seen[0], seen[1] + 1)
            return None
        self._seen[key] = (now, 0)
        self._seen.move_to_end(key)
        while len(self._seen) > self.most:
            self._seen.popitem(last=False)
        return 0 if seen is None else seen[1]


OUTAGE_FIRST = 0.1
"""Seconds a loop waits after its first round that could not reach Redis."""

OUTAGE_CAP = 5.0
"""The longest wait between two rounds while Redis stays unreachable: how late, at most,
a loop notices that Redis is back."""


class Outage:
    """A background loop's view of Redis: up, or down since when. ``failed`` (from the
    loop's ``except REDIS_ERRORS``) gives the wait before the next round, doubling from
    ``OUTAGE_FIRST`` up to ``OUTAGE_CAP``; ``ok`` (after a round that reached Redis) ends
    an outage. Each change of state is one log line: down, still down (every ``remind``
    seconds), back."""

    def __init__(
        self,
        what: str,
        logger: logging.Logger,
        *,
        first: float = OUTAGE_FIRST,
        cap: float = OUTAGE_CAP,
        remind: float = LOG_EVERY,
    ) -> None:
        self.what = what
        """What the loop does, for its lines: ``"starting chats' waiting messages"``."""
        self.logger = logger
        self.first = first
        self.cap = cap
        """A loop on the delivery path (pub/sub, fills) waits less: it is what viewers
        wait for once Redis is back."""
        self.remind = remind
        self.since: float | None = None
        self.delay = 0.0
        self._said = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> float:
        """A round could not reach Redis: the seconds to wait before the next."""
        now = time.monotonic()
        if self.since is None:
            self.since = self._said = now
            self.delay = self.first
            self.logger.warning(
                "%s: Redis is unreachable (%s); retrying with backoff, at most every %g s",
                self.what,
                exc,
                self.cap,
            )
        else:
            self.delay = min(self.delay * 2, self.cap)
            if now - self._said >= self.remind:
                self._said = now
                self.logger.warning(
                    "%s: Redis still unreachable after %.0f s (%s)",
                    self.what,
                    now - self.since,
                    exc,
                )
        return self.delay

    def ok(self) -> None:
        """A round reached Redis: an outage, if there was one, is over."""
        if self.since is not None:
            self.logger.warning(
                "%s: Redis answers again after %.1f s", self.what, time.monotonic() - self.since
            )
            self.since = None
            self.delay = 0.0

    def pause(self, every: float) -> float:
        """The wait before a periodic loop's next round: ``every``, or longer in an
        outage."""
        return max(every, self.delay) if self.down else every


LOOP_ERRORS: Counter[str] = Counter()
"""Rounds of each background loop of this process that raised, by the loop's name."""

MALFORMED: Counter[str] = Counter()
"""Stored entries read by this process that were malformed (served as an error), by
where they were read: ``events`` (the event log), ``durable`` (Durable Streams reads)."""

_loops = Throttle()
_streams = Throttle()


def held_back(count: int) -> str:
    return f" ({count} more like it since the last line)" if count else ""


def loop_failed(name: str, logger: logging.Logger, what: str = "") -> None:
    """From the ``except Exception`` of a background loop's round: counted, and logged
    with its traceback (once a minute per loop). ``what``: the round's context."""
    LOOP_ERRORS[name] += 1
    count = _loops.due(name)
    if count is not None:
        about = f" ({what})" if what else ""
        logger.error(
            "%s: a round failed%s; going on%s", name, about, held_back(count), exc_info=True
        )


def malformed(where: str, stream_id: str, seq: int, why: str) -> None:
    """A stored entry of ``stream_id`` at ``seq`` that cannot be served as it is: counted,
    and logged once a minute per stream (its readers get an ``error`` in its place)."""
    MALFORMED[where] += 1
    count = _streams.due((where, stream_id))
    if count is not None:
        logging.getLogger("broadcaster.log").error(
            "stream %s: stored entry %d is malformed (%s); its readers get an error in its place%s",
            stream_id,
            seq,
            why,
            held_back(count),
            extra={"stream_id": stream_id},
        )


class Counts:
    """A Prometheus collector of this module's counts, for a process's registry:
    ``<prefix>_loop_errors_total{loop}`` and ``<prefix>_malformed_entries_total{read}``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def collect(self) -> Iterator[Metric]:
        loops = CounterMetricFamily(
            f"{self.prefix}_loop_errors",
            "Rounds of a background loop of this process that raised (logged, then the "
            "loop went on), by loop",
            labels=["loop"],
        )
        for name, count in sorted(LOOP_ERRORS.items()):
            loops.add_metric([name], count)
        yield loops
        entries = CounterMetricFamily(
            f"{self.prefix}_malformed_entries",
            "Stored entries read by this process that were malformed (another program "
            "wrote them) and were served as an error in their place, by read: events "
            "(the event log), durable (Durable Streams reads)",
            labels=["read"],
        )
        for read in ("events", "durable"):
            entries.add_metric([read], MALFORMED[read])
        yield entries
