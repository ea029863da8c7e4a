"""Viewers that arrive while their stream's topic is being set up wait for it.

A herd (after a deploy, or a front-end lost) reaches a front-end that watches none of its
streams yet. Without this, every viewer of such a stream would read where it stands and
its history from the log, each through the app. With this, they wait instead: for the
stream's state, read for every stream asked about in the same turns of the event loop in
one round trip (``read``: ``run``'s), from which its topic is made (``watch``); or for
the read of a first viewer that went through the app (``opening``); then for the topic
to settle (``Repairer.wait_for``). They are then served from what the topic holds. Each
wait is bounded by ``SETTLE_WAIT``; a stream the read finds unknown, ended or a Durable
Stream, or a read that fails, sends its waiters on (each is answered the usual way).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from prometheus_client import Histogram

from broadcaster.core import contain
from broadcaster.core.connection import REDIS_ERRORS
from broadcaster.core.eventlog import EventLog, StreamInfo
from broadcaster.fanout.repair import CHECK_BATCH, SETTLE_WAIT, Repairer
from broadcaster.fanout.subscription import Topic

log = logging.getLogger("broadcaster.hub")

Watch = Callable[[str, StreamInfo], bool]
"""Makes a stream's topic from its state for the viewers waiting for it (``Hub``'s):
False when it may not (the hub drains, or has one)."""


class Arrivals:
    """Owns the task that reads the states asked for (``run``: the hub awaits it)."""

    def __init__(
        self, repairer: Repairer, log_: EventLog, watch: Watch, timed: Histogram | None = None
    ) -> None:
        """``timed``: what observes each read's round trip (the Redis read latency)."""
        self._repairer = repairer
        self._log = log_
        self._watch = watch
        self._timed = timed
        self._opening: dict[str, list[Callable[[], None]]] = {}
        """Streams whose state is being read, and who waits for their topics (each holds
        a connection: the connection limit bounds them)."""
        self._asks: list[str] = []
        """Streams of ``_opening`` whose state ``run`` is to read: bounded as it is."""
        self._wanted = asyncio.Event()
        self._stopped = False
        self.reads = 0
        """States read for waiting viewers (``run``), a count the tests read."""

    def wait(self, stream_id: str, topic: Topic | None, then: Callable[[], None]) -> bool:
        """``then()`` once ``stream_id``'s topic (``topic``; None, the one about to be
        made from its state, read with other streams', or by a viewer through the app)
        may vouch for more; False, and nothing called, when nothing that would help is
        coming (a topic that cannot, or no more reads: the hub stops)."""
        if topic is None:
            waiting = self._opening.get(stream_id)
            if waiting is None:
                if self._stopped:
                    return False
                waiting = self.opening(stream_id)
                self._asks.append(stream_id)
                self._wanted.set()
            waiting.append(then)
            return True
        if not topic.watched or topic.form != "sse" or topic.ended:
            return False
        return self._repairer.wait_for(topic, then)

    def opening(self, stream_id: str) -> list[Callable[[], None]]:
        """``stream_id``'s state is being read, to make its topic: others wait for that
        (the first such read), until ``watched`` or ``release``, or at the latest
        ``SETTLE_WAIT`` seconds. Who waits (add to it)."""
        waiting = self._opening.get(stream_id)
        if waiting is None:
            waiting = self._opening[stream_id] = []
            loop = asyncio.get_running_loop()
            loop.call_later(SETTLE_WAIT, self._expired, stream_id, waiting)
        return waiting

    def release(self, stream_id: str) -> None:
        """No topic comes of the read (the stream is unknown, a Durable Stream, ended):
        those waiting go on (and each is answered the usual way)."""
        _go_on(self._opening.pop(stream_id, []))

    def _expired(self, stream_id: str, waiting: list[Callable[[], None]]) -> None:
        if self._opening.get(stream_id) is waiting:
            self.release(stream_id)

    def watched(self, topic: Topic) -> None:
        """``topic`` was made: those waiting for it wait for it to settle."""
        waiting = self._opening.pop(topic.stream_id, None)
        for then in waiting or ():
            if not self._repairer.wait_for(topic, then):
                _go_on([then])

    # --- the reads of the states asked for ---

    async def run(self) -> None:
        """Read the states asked for, up to ``CHECK_BATCH`` streams per round trip; those
        asked for while a read is out go in the next. Until ``stop``."""
        outage = contain.Outage("reading the state of streams viewers wait for", log)
        while not self._stopped:
            await self._wanted.wait()
            self._wanted.clear()
            while self._asks and not self._stopped:
                batch, self._asks = self._asks[:CHECK_BATCH], self._asks[CHECK_BATCH:]
                try:
                    started = time.perf_counter()
                    infos = await self._log.infos(batch)
                    if self._timed is not None:
                        self._timed.observe(time.perf_counter() - started)
                    outage.ok()
                except REDIS_ERRORS as exc:
                    outage.failed(exc)  # said once; each waiter asks the usual way
                    infos = [None] * len(batch)
                except Exception:
                    contain.loop_failed("hub-arrivals", log, f"{len(batch)} stream(s)")
                    infos = [None] * len(batch)
                self.reads += len(batch)
                self._made(batch, infos)

    def _made(self, batch: list[str], infos: list[StreamInfo | None]) -> None:
        for stream_id, info in zip(batch, infos, strict=True):
            if stream_id not in self._opening:
                continue  # made meanwhile (by a viewer through the app), or given up
            if (
                info is None
                or info.kind == "ds"
                or info.ended
                or self._stopped
                or not self._watch(stream_id, info)
            ):
                self.release(stream_id)

    def stop(self) -> None:
        """No more reads: ``run`` returns, and whoever waits for one goes on."""
        self._stopped = True
        self._wanted.set()
        for stream_id in self._asks:
            self.release(stream_id)
        self._asks.clear()


def _go_on(waiting: list[Callable[[], None]]) -> None:
    """Called once the current callback is over: never from inside a read or a fan-out."""
    if waiting:
        loop = asyncio.get_running_loop()
        for then in waiting:
            loop.call_soon(then)
