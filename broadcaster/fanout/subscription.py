"""One viewer as the fan-out sees it: a bounded buffer of live frames, and while the
viewer is caught up, a function that writes straight to its socket."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from typing import Any, Literal, Protocol

from broadcaster.core import sse
from broadcaster.core.events import Event
from broadcaster.core.keys import CLOSE
from broadcaster.core.sse import Writer
from broadcaster.fanout.keepalive import Keepalive

Run = tuple[int, int, bytes, bool]
"""Consecutive events of a stream as they go to viewers: the first seq, the last seq,
their frames joined (encoded once for every viewer), and whether they end it."""

Form = Literal["sse", "ds"]
"""What a topic's runs carry. ``sse``: SSE frames of events, as the append script encodes
them (``id: <seq>.<tag>``, ``event:``, one ``data:`` line; ``[DONE]`` after a terminal
one). ``ds``: the entries of a Durable Stream, ``<tag> <length>\n<bytes>`` each, binary-safe;
a run that ends the stream ends with the closure marker (no bytes)."""


def page_run(form: Form, page: list[Event]) -> Run:
    """A page read from the log as the run a message would have brought. A page ends at
    a malformed entry, read as an ``error`` (``events.malformed``), and so does the run:
    an ``error`` is terminal in a stream of events; a Durable Stream's entry, read so,
    is followed by the closure marker (its types are never ``error`` otherwise)."""
    last = page[-1]
    if form == "ds":
        frames = b"".join(b"%s %d\n%s" % (e.tag.encode(), len(e.data), e.data) for e in page)
        if last.type == "error":
            return page[0].seq, last.seq, frames + b"%s 0\n" % last.tag.encode(), True
        return page[0].seq, last.seq, frames, last.type == CLOSE
    return page[0].seq, last.seq, b"".join(sse.encode(e) for e in page), last.terminal


def ds_frames_ok(payload: bytes, at: int, count: int) -> bool:
    """Whether ``payload[at:]`` is ``count`` Durable Streams entries as the append script
    publishes them (``<tag> <length>\\n<bytes>`` each, filling it exactly): a message
    whose frames can be read. Anything else is no append's, and the log is read instead."""
    end = len(payload)
    while at < end:
        nl = payload.find(b"\n", at)
        tag, space, size = payload[at:nl].partition(b" ")
        if nl < 0 or not space or len(tag) != 8 or not size.isdigit():
            return False
        at = nl + 1 + int(size)
        count -= 1
    return at == end and count == 0


BUFFER_BYTES = 1 << 20
"""Most bytes of live runs one viewer's buffer holds (besides ``HubConfig.viewer_buffer``
events): a viewer that stopped reading would otherwise keep megabytes of large events
alive that every other viewer has long been sent. Past it, the viewer reads from Redis
once its socket drains."""


class Holder(Protocol):
    """What holds a viewer handed over caught up (``viewers.response.Handed``)."""

    def wake(self) -> None:
        """The viewer has work no direct write can do."""
        ...

    def finish(self, last: bytes) -> bool:
        """``last`` (a terminal run) and the response's end, in one write; False when
        the socket refused it."""
        ...


class Subscription:
    """One viewer's bounded buffer of live runs. Never blocks the fan-out: when full, the
    newest are dropped and ``overflowed`` tells the viewer to refill from Redis. While the
    viewer is caught up and waits, ``direct`` is its ``Writer`` and the fan-out writes to the
    socket itself, one ``write`` per viewer per message; the task sets it only while it
    waits, so the two never interleave."""

    __slots__ = (
        "_buf",
        "_buffered",
        "_bytes",
        "_limit",
        "_waiter",
        "armed",
        "closed",
        "counted",
        "direct",
        "ended",
        "farewell",
        "finished",
        "gone",
        "handed",
        "holder",
        "keepalive",
        "last",
        "marked",
        "marks",
        "notice",
        "overflowed",
        "own",
        "ping_at",
        "ping_due",
        "presence",
        "quiet_since",
        "subject",
        "topic",
    )

    def __init__(
        self, limit: int, topic: Topic | None = None, keepalive: Keepalive | None = None
    ) -> None:
        self._buf: list[Run] = []
        """Runs for the viewer's task, taken whole (a list: every viewer has one, and an
        empty list is far smaller than a deque)."""
        self._buffered = 0  # events in _buf
        self._bytes = 0  # their encoded size
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None
        self.overflowed = False
        self.closed = False
        self.ended = False
        """The terminal event went out through ``direct``: the response is to end."""
        self.last = 0
        """The seq of the last event this viewer was sent (or handed to send)."""
        self.direct: Writer | None = None
        self.holder: Holder | None = None
        """Who holds it once it is handed over (a ``Handed``): it writes a terminal run
        and the response's end in one write (``Holder.finish``), and is woken when the
        viewer has work (``armed``); else the run goes by ``direct`` and the end by its
        holder afterwards. (The holder itself, not two bound methods of it: every open
        viewer keeps this.)"""
        self.finished = False
        """The terminal event went out by ``Holder.finish``: the response is over."""
        self.quiet_since = 0.0
        """Loop time it went direct, or of its last ping: with its topic's last read,
        how long its socket has been silent."""
        self.ping_due = False
        """A keepalive the socket did not take directly: the viewer's task sends it."""
        self.topic = topic
        self.keepalive = keepalive
        self.ping_at: float | None = None
        """When ``keepalive`` checks it next (None: not scheduled)."""
        self.presence = False
        """The viewer asked to be told the stream's viewer count (``data-viewers``)."""
        self.notice: bytes | None = None
        """A ``data-viewers`` frame the socket did not take directly: the task sends it."""
        self.own = True
        """It is its response's only subscription (it counts as a connection)."""
        self.counted = False
        """It counts among its stream's viewers (presence), as ``subject``."""
        self.subject: str | None = None
        self.handed = False
        """Handed over while caught up (``detach``), its task ended: its holder is woken
        when it has work, and leaves the hub for it."""
        self.armed = False
        """Its holder is woken (once) instead of a task, while it is handed over."""
        self.gone = False
        """It left the hub (``Hub.leave``)."""
        self.marks = False
        """Its viewer asked for ``caught_up=1``: a ``data-caught-up`` mark once its replay
        reaches the tail, the tail's seq in each keepalive."""
        self.marked = False
        """The caught-up mark went out."""
        self.farewell: bytes | None = None
        """Set when the hub drains: the last bytes of the response (``sse.farewell``)."""

    def deliver(self, run: Run) -> None:
        """New events of the stream: straight to the socket when they follow what the
        viewer was sent, else into the buffer for the viewer's task."""
        w = self.direct
        if w is not None and run[0] == self.last + 1:
            if not run[3]:
                if w(run[2]):
                    self.last = run[1]
                    return
            elif self._end_direct(w, run):
                return
        self.direct = None
        if self._buffered >= self._limit or self._bytes >= BUFFER_BYTES:
            self.overflowed = True
        else:
            self._buf.append(run)
            self._buffered += run[1] - run[0] + 1
            self._bytes += len(run[2])
        self._wake()

    def _end_direct(self, w: Writer, run: Run) -> bool:
        """The terminal run straight to the socket: with the response's end, in one write,
        when it has a holder (``Holder.finish``). False if the socket refused it."""
        holder = self.holder
        if not (w(run[2]) if holder is None else holder.finish(run[2])):
            return False
        self.last = run[1]
        self.direct = None
        self.ended = True
        self.finished = holder is not None
        self._wake()
        return True

    def park(self, writer: Writer, now: float) -> None:
        """The viewer is caught up and its task goes to sleep: from now on the fan-out
        writes to ``writer``, and the keepalive task pings it when it falls silent."""
        self.direct = writer
        self.quiet_since = now
        if self.keepalive is not None:
            self.keepalive.schedule(self, now)

    def silent_since(self) -> float:
        """Loop time its socket last got frames (its topic's last run) or a ping."""
        topic = self.topic
        return self.quiet_since if topic is None else max(self.quiet_since, topic.read_at)

    def ping(self, now: float) -> None:
        """A keepalive, straight to the socket, or else through the viewer's task."""
        w = self.direct
        if w is not None and w(self.ping_frame()):
            self.quiet_since = now
            return
        self.direct = None
        self.ping_due = True
        self._wake()

    def ping_frame(self) -> bytes:
        """``: ping``; with the tail's seq for a viewer that asked for it."""
        return sse.keepalive(self.tail()) if self.marks else sse.PING

    def tail(self) -> int:
        """The stream's last seq as this viewer knows it."""
        topic = self.topic
        return self.last if topic is None else max(self.last, topic.cursor)

    def tell(self, frame: bytes) -> None:
        """A notice that is no event (the viewer count): straight to the socket between
        two runs, or else through the viewer's task (only the latest is kept)."""
        w = self.direct
        if w is not None and w(frame):
            return
        self.direct = None
        self.notice = frame
        self._wake()

    def drain(self, farewell: bytes) -> None:
        """Closed by a draining hub: its response ends with ``farewell``."""
        self.farewell = farewell
        self.close()

    def close(self) -> None:
        self.closed = True
        self.direct = None
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            if not w.done():
                w.set_result(None)
        elif self.armed and self.holder is not None:
            self.armed = False
            self.holder.wake()

    def take(self) -> list[Run]:
        runs, self._buf = self._buf, []
        self._buffered = 0
        self._bytes = 0
        return runs

    def only_ended(self) -> bool:
        """Its terminal event went out, and nothing else is to be sent."""
        return self.ended and (
            self.finished
            or not (self._buf or self.overflowed or self.closed or self.ping_due or self.notice)
        )

    def idle(self) -> bool:
        """Nothing for the viewer's task to do: it may hand the socket to the reader."""
        return not (
            self._buf
            or self.overflowed
            or self.closed
            or self.ended
            or self.ping_due
            or self.notice is not None
        )

    async def wait(self, seconds: float | None) -> bool:
        """Wait until something is buffered (or overflow, close, end, a ping due); False
        after ``seconds`` without (None: no time limit, and no timer)."""
        if not self.idle():
            return True
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            if seconds is None:
                await self._waiter
                return True
            async with asyncio.timeout(seconds):
                await self._waiter
            return True
        except TimeoutError:
            return False
        finally:
            self._waiter = None


TAIL_BYTES = 16384
"""Frames of its newest events a topic keeps for viewers that reconnect a little behind."""


NO_TAIL = ()
"""``Topic.tail`` while it holds nothing."""

NO_ENCODINGS: tuple[None, dict[Any, Any]] = (None, {})
"""``Topic.encoded`` between runs (never written: it names no run)."""

NOT_SHARED: tuple[None, None] = (None, None)
"""``Topic.shared`` between runs."""


class Topic:
    """A stream this process watches: its channel, its viewers, and the seq up to which
    every event has been handed to them (the *cursor*)."""

    __slots__ = (
        "appended_at",
        "behind",
        "channel",
        "checked_at",
        "cursor",
        "encoded",
        "ended",
        "form",
        "linger",
        "pending",
        "read_at",
        "ready",
        "repairing",
        "seeded",
        "settled",
        "shared",
        "stream_id",
        "subs",
        "tag",
        "tail",
        "tail_bytes",
        "told",
        "told_at",
        "told_count",
        "viewers",
        "watched",
        "written",
    )

    def __init__(
        self, stream_id: str, channel: bytes, cursor: int, tag: str, form: Form = "sse"
    ) -> None:
        self.stream_id = stream_id
        self.channel = channel
        self.appended_at = b""
        """When the first pending message's events were appended (ms, Redis's clock)."""
        self.cursor = cursor
        self.tag = tag
        """The history tag of the event at ``cursor`` ("" when unknown)."""
        self.form = form
        self.linger: asyncio.TimerHandle | None = None
        """Set while nobody watches it: when it stops being watched."""
        self.encoded: tuple[Run | None, dict[Any, Any]] = NO_ENCODINGS
        """The run being fanned out in other encodings, made once for all their viewers
        (each checks the run is its own); let go once the run is out."""
        self.shared: tuple[Run | None, Any] = NOT_SHARED
        """The run's form shared by connections following many streams (``dashboard/feed.py``)."""
        self.viewers = 0
        """The stream's viewer count, as the last presence message said."""
        self.told_count = -1
        self.told_at = -1e9
        self.told: asyncio.TimerHandle | None = None
        """A ``data-viewers`` notice scheduled (at most one a second)."""
        self.subs: set[Subscription] = set()
        self.watched = False
        """It is the hub's topic of its stream (from ``Hub._watch`` until ``_unwatch``)."""
        self.ready: asyncio.Future[None] | None = None
        """Done once Redis confirmed the subscription to ``channel``."""
        self.read_at = 0.0
        """Loop time events last went to the viewers (or the subscription began)."""
        self.checked_at = 0.0
        """Loop time the log was last asked where the stream is."""
        self.repairing = False
        """A read of the log is filling a gap: messages meanwhile only raise ``behind``."""
        self.written = False
        """A run of live events went to its viewers (traces record the first once)."""
        self.seeded = False  # its history was read once to start its tail (``Repairer``)
        self.settled = False
        """Events went to the viewers since the subscription was confirmed: every later
        event comes by message (or a fill); before, some may be unknown here."""
        self.ended = False
        """The terminal event went to the viewers."""
        self.tail: deque[Run] | tuple[()] = NO_TAIL
        """The newest runs that went out, up to the cursor (at most ``TAIL_BYTES``): a viewer
        reconnecting a little behind reads them, not the log. ``NO_TAIL`` until a run goes
        out live: a dashboard's front-end holds many quiet topics, and a deque is large."""
        self.tail_bytes = 0
        self.behind = 0
        """The highest seq a message announced while the topic was repairing."""
        self.pending: list[Run] = []
        """Runs the current read of the pub/sub socket brought, to go out together after it."""

    def remember(self, run: Run) -> None:
        """``run`` went to the viewers: keep it in the tail, the oldest making room."""
        if self.form != "sse" or len(run[2]) > TAIL_BYTES:
            self.forget()
            return
        tail = self.tail
        if not isinstance(tail, deque):
            tail = self.tail = deque()
        tail.append(run)
        self.tail_bytes += len(run[2])
        while self.tail_bytes > TAIL_BYTES:
            self.tail_bytes -= len(tail.popleft()[2])

    def seed(self, run: Run) -> None:
        """``run`` was read from the log by a viewer, up to the cursor: the tail starts with
        it when it holds nothing yet (the topic settled with no event since), so that the
        stream's next viewers get its history from here, not each from the log. Only
        while the cursor is the run's last event, with its history tag."""
        if (
            self.tail
            or not self.settled
            or self.repairing
            or self.ended
            or run[3]
            or run[1] != self.cursor
            or self.pending
            or not run[2].startswith(b"id: %d." % run[0])
            or b"id: %d.%s\n" % (self.cursor, self.tag.encode()) not in run[2]
        ):
            return
        self.remember(run)

    def forget(self) -> None:
        self.tail = NO_TAIL
        self.tail_bytes = 0

    def vouches(self, seq: int, tag: str | None) -> bool:
        """Whether this process may serve the resume point ``seq`` (history tag ``tag``;
        None: the start) without asking the log (``Hub.known``): settled, its subscription
        confirmed, not ended, not filling a gap, and the point at its cursor or in its
        tail (the start: when the tail reaches back to the first event)."""
        ready = self.ready
        if self.repairing or self.ended or not self.settled or self.form != "sse":
            return False
        if ready is None or not ready.done():
            return False
        if tag is None:  # the start: ``since(0) is not None``, without its list
            if seq != 0 or self.cursor == 0:
                return seq == 0
            for run in self.tail:  # the tail reaches back to the first event
                return run[0] <= 1
            return False
        return self.holds(seq, tag)

    def holds(self, seq: int, tag: str) -> bool:
        """Whether the event ``seq`` with history tag ``tag`` is the cursor's or in the
        tail: a resume point this topic can serve, and vouch for, without the log."""
        if seq == self.cursor:
            return tag == self.tag
        mark = b"id: %d.%s\n" % (seq, tag.encode())
        for first, last, frames, _ in self.tail:
            if first <= seq <= last:
                return frames.startswith(mark) or b"\n" + mark in frames
        return False

    def since(self, seq: int) -> list[Run] | None:
        """The tail's runs after ``seq`` (the first may begin before it: the caller trims
        by seq); None unless the tail reaches back to ``seq`` (``[]`` at the cursor)."""
        if seq >= self.cursor:
            return []
        tail = self.tail
        for i, run in enumerate(tail):
            if run[0] > seq + 1:
                return None
            if run[1] > seq:
                # The whole tail, mostly: a herd from the start, or just behind.
                return list(tail) if i == 0 else list(itertools.islice(tail, i, None))
        return None
