"""What push did not bring, read from the log: once per stream, however many viewers it has.

Three things send a watched stream here, each asking about many streams per round trip:
a gap in seqs (``fill``), a subscription that was interrupted (``recover``: Redis may
have lost its newest writes, so the newest seq and the tag at the cursor are read) and a
stream quiet for ``quiet_check`` seconds (``check``: a lost last message). A stream
ahead of its cursor is filled; one that went back, or whose history at the cursor
changed, has its responses ended, so each viewer reconnects and is told (409, 404) or
resumes if its producer wrote the same events again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from contextvars import Context

from broadcaster.core import contain
from broadcaster.core.connection import REDIS_ERRORS
from broadcaster.core.eventlog import EventLog
from broadcaster.fanout.subscription import Run, Topic, page_run

log = logging.getLogger("broadcaster.hub")

CHECK_BATCH = 500
"""Streams asked about in one pipelined round trip."""

SETTLE_WAIT = 2.0
"""Most seconds a viewer waits for a new topic to settle (``when_settled``)."""

SEED_EVENTS = 64
"""A topic settling with viewers waiting for it, and no more events than this, reads its
whole history once (``_seed``): they, and the stream's next viewers from its start, are
then served from the topic's tail, not each from the log."""


class Repairer:
    """Owns ``workers`` tasks that fill gaps and one that runs checks; ``async with``."""

    def __init__(
        self,
        log_: EventLog,
        fan_out: Callable[[Topic, Run], None],
        *,
        workers: int = 4,
    ) -> None:
        self._log = log_
        self._fan_out = fan_out
        self._workers = workers
        # Both hold each watched topic at most once (``Topic.repairing``, the set): bounded
        # by the streams this process watches.
        self._fills: asyncio.Queue[Topic | None] = asyncio.Queue()
        self._checks: dict[bool, deque[Topic]] = {True: deque(), False: deque()}
        self._queued_checks: dict[Topic, bool] = {}
        self._check_wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._waiting: dict[Topic, tuple[list[Callable[[], None]], asyncio.TimerHandle]] = {}
        self._seeds: list[Topic] = []  # topics whose history to read (``_seed``): bounded
        """Who waits for each topic to settle (``when_settled``): viewers, each holding
        a connection (the connection limit bounds them), for at most ``SETTLE_WAIT``."""
        self._stopped = False
        self.fills = 0
        self.checks = 0

    async def __aenter__(self) -> Repairer:
        self._tasks = [
            asyncio.create_task(self._fill_loop(), name=f"repair-{i}", context=Context())
            for i in range(self._workers)
        ]
        self._tasks.append(
            asyncio.create_task(self._check_loop(), name="repair-check", context=Context())
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        # The loops also check ``_stopped``, and are woken: redis-py can swallow a
        # cancel that lands inside one of its calls, and shutdown must not depend on it.
        self._stopped = True
        for topic in list(self._waiting):
            self.settled(topic)
        self._check_wanted.set()
        for _ in range(self._workers):
            self._fills.put_nowait(None)
        await contain.cancel_until_ended(self._tasks, raising=False)
        self._tasks = []

    def fill(self, topic: Topic, upto: int = 0) -> None:
        """Read what follows the topic's cursor (at least up to ``upto``) and fan it out."""
        topic.behind = max(topic.behind, upto)
        if not topic.repairing:
            topic.repairing = True
            self._fills.put_nowait(topic)

    def check(self, topics: list[Topic]) -> None:
        """Ask the log where these quiet streams stand, and act on what it says."""
        self._queue_checks(topics, thorough=False)

    def recover(self, topics: list[Topic]) -> None:
        """The same after an interruption, checking the history at each cursor too."""
        self._queue_checks(topics, thorough=True)

    def _queue_checks(self, topics: list[Topic], *, thorough: bool) -> None:
        for topic in topics:
            queued = self._queued_checks.get(topic)
            if queued is None or (thorough and not queued):
                self._queued_checks[topic] = thorough
                self._checks[thorough].append(topic)
        self._check_wanted.set()

    def wait_for(self, topic: Topic, then: Callable[[], None]) -> bool:
        """Call ``then`` once ``topic`` settles (and its short history is read, once per topic:
        ``_seed``), at the latest after ``SETTLE_WAIT`` seconds: a herd arriving at a newly
        watched stream waits for this instead of each reading the log. False, and nothing
        called, when nothing that would help is coming."""
        seed = not topic.tail and not topic.seeded and 0 < topic.cursor <= SEED_EVENTS
        if topic.settled and not seed:
            return False
        waiting = self._waiting.get(topic)
        if waiting is None:
            loop = asyncio.get_running_loop()
            waiting = self._waiting[topic] = ([], loop.call_later(SETTLE_WAIT, self.settled, topic))
            if topic.settled:
                self._seeds.append(topic)
                self._check_wanted.set()
        waiting[0].append(then)
        return True

    def settled(self, topic: Topic) -> None:
        """``topic`` settled (or stopped waiting): whoever waited for it goes on, once
        what settled it (a run going to the viewers) is over."""
        waiting = self._waiting.pop(topic, None)
        if waiting is not None:
            waiting[1].cancel()
            loop = asyncio.get_running_loop()
            for then in waiting[0]:  # once what settled it (a run to its viewers) is over
                loop.call_soon(then)

    # --- filling ---

    async def _fill_loop(self) -> None:
        outage = contain.Outage("filling streams from the log", log, first=0.05, cap=2.0)
        while not self._stopped:
            topic = await self._fills.get()
            if topic is None:
                return
            while topic.watched and not self._stopped:
                try:
                    await self._fill(topic)
                    outage.ok()
                    break
                except REDIS_ERRORS as exc:
                    await asyncio.sleep(outage.failed(exc))
                except Exception:
                    # Not Redis: trying again would raise again. The stream's viewers
                    # are cut and resume from the log themselves; this worker goes on.
                    contain.loop_failed("repair-fill", log, f"stream {topic.stream_id}")
                    self._given_up(topic)
                    await asyncio.sleep(contain.BACKOFF)
                    break
            topic.repairing = False

    def _given_up(self, topic: Topic) -> None:
        """A fill of ``topic`` failed for good: its responses end (each viewer resumes from
        its ``Last-Event-ID`` and reads what it lacks from the log), and the topic vouches
        for nothing until events go through it again."""
        topic.settled = False
        topic.forget()
        for sub in list(topic.subs):
            with contextlib.suppress(Exception):
                sub.close()

    async def _fill(self, topic: Topic) -> None:
        """Pages of the log after the cursor until it reaches what messages announced
        meanwhile (they only raise ``behind`` while this runs: nothing is delivered
        twice or out of order)."""
        self.fills += 1
        while True:
            read = False
            async for page in self._log.read_after(topic.stream_id, topic.cursor):
                if not topic.watched:
                    return
                read = True
                run = page_run(topic.form, page)
                last = page[-1]
                topic.cursor, topic.tag = last.seq, last.tag
                self._fan_out(topic, run)
            if topic.behind <= topic.cursor or not read:
                return

    # --- checking ---

    async def _check_loop(self) -> None:
        outage = contain.Outage("checking streams against the log", log, first=0.5)
        while not self._stopped:
            await self._check_wanted.wait()
            self._check_wanted.clear()
            await self._seed()
            while not self._stopped and (batch := self._next_checks()):
                thorough, topics = batch
                try:
                    await self._check(topics, thorough=thorough)
                    outage.ok()
                except REDIS_ERRORS as exc:
                    self._queue_checks(topics, thorough=thorough)
                    await asyncio.sleep(outage.failed(exc))
                    break
                except Exception:
                    # Not Redis: this batch is dropped (asked again, it would raise
                    # again); the next check of each stream asks afresh.
                    contain.loop_failed("repair-check", log, f"{len(topics)} stream(s)")
                    await asyncio.sleep(contain.BACKOFF)
                await self._seed()  # those the check settled, for viewers waiting

    def _next_checks(self) -> tuple[bool, list[Topic]] | None:
        """Up to ``CHECK_BATCH`` queued topics, those recovering first."""
        for thorough in (True, False):
            queue = self._checks[thorough]
            if queue:
                topics = [queue.popleft() for _ in range(min(CHECK_BATCH, len(queue)))]
                for t in topics:
                    if self._queued_checks.get(t) == thorough:
                        del self._queued_checks[t]
                return thorough, [t for t in topics if t.watched]
        return None

    async def _check(self, topics: list[Topic], *, thorough: bool) -> None:
        if not topics:
            return
        self.checks += len(topics)
        now = asyncio.get_running_loop().time()
        asked = [(t.cursor, t.tag) for t in topics]
        if thorough:  # the tag at the cursor: was the history up to it rewritten?
            found = await self._log.positions([(t.stream_id, t.cursor) for t in topics])
        else:  # the tag of the newest event: compared only when it is the cursor's
            found = await self._log.heads([t.stream_id for t in topics])
        for topic, (cursor, tag_then), (seq, tag) in zip(topics, asked, found, strict=True):
            topic.checked_at = now
            if topic.cursor != cursor:
                continue  # events came meanwhile: the answer is about a past position
            rewritten = tag_then and tag != tag_then and (thorough or seq == cursor)
            if seq < cursor or rewritten:
                self._rewound(topic, seq)
            elif seq > cursor:
                self.fill(topic, seq)
            elif tag == tag_then and not topic.repairing and _confirmed(topic):
                # Asked after its subscription was confirmed, and nothing came since: the
                # cursor is where the stream stands, and what follows comes by message.
                topic.settled = True
                wanted = topic in self._waiting and not topic.tail and not topic.seeded
                if wanted and 0 < topic.cursor <= SEED_EVENTS:
                    self._seeds.append(topic)
                else:
                    self.settled(topic)

    async def _seed(self) -> None:
        """The whole (short) history of each topic queued (``wait_for``), read in one
        round trip per ``CHECK_BATCH`` topics, starts its tail (``Topic.seed`` checks it
        still may); then those waiting for it go on. Once per topic: a stream whose
        history does not fit is read by its viewers, as before."""
        topics = [t for t in self._seeds if t.watched and not t.seeded]
        self._seeds.clear()
        if not topics:
            return
        for topic in topics:
            topic.seeded = True
        try:
            for start in range(0, len(topics), CHECK_BATCH):  # round trips of bounded size
                batch = topics[start : start + CHECK_BATCH]
                try:
                    points = [(t.stream_id, 0) for t in batch]
                    pages = await self._log.read_pages(points, SEED_EVENTS)
                    for topic, page in zip(batch, pages, strict=True):
                        if page and page[0].seq == 1 and page[-1].seq == topic.cursor:
                            topic.seed(page_run(topic.form, page))
                except REDIS_ERRORS:
                    pass  # they go on without: each reads the log itself, as the slow way
                except Exception:
                    contain.loop_failed("repair-seed", log, f"{len(batch)} stream(s)")
                for topic in batch:
                    self.settled(topic)
        finally:
            for topic in topics:  # those not reached (a cancel): no one waits longer
                self.settled(topic)

    def _rewound(self, topic: Topic, seq: int) -> None:
        log.warning(
            "stream %s lost writes (at seq %d, it now ends at %d); ending %d response(s)",
            topic.stream_id,
            topic.cursor,
            seq,
            len(topic.subs),
        )
        topic.cursor, topic.tag = seq, ""
        topic.settled = False
        topic.forget()
        for sub in list(topic.subs):
            sub.close()


def _confirmed(topic: Topic) -> bool:
    """Whether ``topic``'s subscription was confirmed (before the check that asks this was
    sent: checks are queued after it, ``Hub._confirmed``, or long after)."""
    return topic.ready is not None and topic.ready.done() and not topic.ready.cancelled()
