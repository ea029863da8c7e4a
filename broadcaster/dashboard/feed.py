"""Many streams on one SSE connection (``GET /v1/events``): a connection is one viewer of
each stream it follows, on the hub's own topics, so an event costs Redis what it costs
for any viewer, and a prefix's new streams are heard of from their creation (one message
per stream created).

Each frame is the event as the single-stream route sends it, its ``data`` wrapped as
``{"stream", "seq", "event"}`` (made once per run for every connection following the
stream, ``Topic.shared``), and its ``id`` the connection's resume point
(``dashboard/cursor.py``): the only part made per connection. While the connection's task waits
with nothing to do, live runs go straight to its socket from the fan-out, and keepalives
from the hub's keepalive task, as for a single-stream viewer; otherwise they wait in
each stream's bounded buffer for the task. A late joiner or a resume gets each stream's
history (compacted: consecutive deltas of a part folded), then the live events of all, in
the order they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from broadcaster.core import sse
from broadcaster.core.eventlog import EventLog, StreamInfo
from broadcaster.core.events import Event, malformed
from broadcaster.dashboard.catchup import CatchUp
from broadcaster.dashboard.cursor import (
    REBASE,
    Bases,
    Cursor,
    Mark,
    Place,
    covered,
    list_prefix,
)
from broadcaster.fanout.hub import Hub
from broadcaster.fanout.keepalive import Keepalive
from broadcaster.fanout.subscription import Run, Subscription, Topic, Writer

log = logging.getLogger("broadcaster.mux")

PING = b": ping\n\n"
PING_CHUNK = b"%x\r\n%s\r\n" % (len(PING), PING)
"""``PING`` as the HTTP/1.1 chunk the keepalive task writes to a sleeping connection."""


def frame(stream_id: str, event: Event) -> bytes:
    """One event as a frame of the connection, without its id."""
    return b'event: %s\ndata: {"stream":%s,"seq":%d,"event":%s}\n\n' % (
        event.type.encode(),
        json.dumps(stream_id).encode(),
        event.seq,
        event.data,
    )


def run_events(run: Run) -> list[Event]:
    """The events of a run of SSE frames (``id: <seq>.<tag>``, ``event:``, ``data:``). A
    frame that cannot be read so (the hub lets no such message through: this is for
    whatever else might) ends them, with an ``error`` in its place (``events.malformed``),
    as a malformed stored event is read."""
    out = []
    seq = run[0]
    for block in run[2].split(b"\n\n"):
        if not block.startswith(b"id: "):
            continue
        parts = _lines(block)
        if parts is None:
            out.append(malformed(seq))
            break
        eid, event_line, data_line = parts
        number, _, tag = eid.partition(b".")
        seq = int(number) + 1
        event = event_line[7:].decode(errors="replace")
        out.append(Event(seq - 1, event, data_line[6:], tag.decode(errors="replace")))
    return out


def _lines(block: bytes) -> tuple[bytes, bytes, bytes] | None:
    """A frame's id (without ``id: ``), ``event:`` line and ``data:`` line; None unless
    it is the three lines the append script writes."""
    parts = block.split(b"\n", 2)
    if (
        len(parts) != 3
        or not parts[1].startswith(b"event: ")
        or not parts[2].startswith(b"data: ")
        or b"\n" in parts[2]
        or not parts[0][4:].partition(b".")[0].isdigit()
    ):
        return None
    return parts[0][4:], parts[1], parts[2]


Framed = tuple[bytes, bytes]
"""An event of a live run as connections send it: its own id (how a delta of the
connection's id ends), and its frame without the id: what every connection following the
stream shares."""

Alone = tuple[bytes, bytes, int]
"""A run of one event (the usual one) as a connection's chunk ends: the event's own id,
what follows ``id: <head>`` in the chunk (that id, the frame, the chunk's end) and the
chunk's size less ``len(head)``. For a connection whose id is its place's head and the
event's id (its stream alone moved since the base), the chunk is
``%x\r\nid: <head><rest>``: one step per connection."""

Shared = tuple[list[Framed], None] | tuple[None, Alone]
"""A run as the connections following its stream share it, made once per run: its
events ``Framed``, or a one-event run ``Alone``."""


TERMINAL_TAIL = 2 + len(sse.DONE)
"""What follows the ``data:`` line of a terminal event in its run: its blank line, then
``[DONE]``."""


def opening(stream_id: str) -> bytes:
    """How the ``data`` of the stream's frames begins."""
    return b'{"stream":%s,"seq":' % json.dumps(stream_id).encode()


def _shared(opening: bytes, run: Run) -> Shared:
    """The run's ``Shared`` form, made by the first connection of its stream to get it
    (and kept in ``Topic.shared`` for the others): a run of one event sliced with two
    searches into its ``Alone`` form (by ``bytes.join``: %-formatting took a tenth
    more), a longer one ``_framed``."""
    if run[0] != run[1]:
        return _framed(opening, run), None
    frames = run[2]
    eol = frames.find(b"\n")
    data = frames.find(b"\n", eol + 1) + 7  # past "\ndata: ", after its ``event:`` line
    if not (frames.startswith(b"event: ", eol + 1) and frames.startswith(b"\ndata: ", data - 7)):
        return _framed(opening, run), None  # unreadable: ``_framed`` says so
    end = len(frames) - (TERMINAL_TAIL if run[3] else 2)
    rest = b"".join(
        (
            frames[4:data],  # "<id>\nevent: <type>\ndata: "
            opening,
            b"%d" % run[0],
            b',"event":',
            frames[data:end],
            b"}\n\n\r\n",
        )
    )
    eid = frames[4:eol]
    return None, (eid, rest, len(rest) + 2)  # + "id: " - "\r\n"


def framed(made: Shared) -> list[Framed]:
    """A run's events ``Framed``, whatever form it was shared in."""
    if made[0] is not None:
        return made[0]
    eid, rest, _ = made[1]
    return [(eid, rest[len(eid) + 1 : -2])]


def _framed(opening: bytes, run: Run) -> list[Framed]:
    """``frame`` of each event of the run's SSE frames (as the append script makes them:
    ``id: <seq>[.<tag>]``, ``event:``, one ``data:`` line, and ``[DONE]`` after a terminal
    event), by slicing bytes: no event is decoded on the way."""
    out: list[Framed] = []
    for block in run[2].split(b"\n\n"):
        if not block.startswith(b"id: "):
            continue
        parts = _lines(block)
        if parts is None:  # unreadable (``run_events``): an error in its place, and no more
            seq = int(out[-1][0].partition(b".")[0]) + 1 if out else run[0]
            error = malformed(seq)
            data = b'%s%d,"event":%s}' % (opening, seq, error.data)
            out.append((b"%d" % seq, b"event: error\ndata: %s\n\n" % data))
            break
        eid, event_line, data_line = parts
        seq_b = eid.partition(b".")[0]
        body = b'%s\ndata: %s%s,"event":%s}\n\n' % (event_line, opening, seq_b, data_line[6:])
        out.append((eid, body))
    return out


class Follow(Subscription):
    """The connection's subscription to one of its streams, and the stream's place in the
    connection's resume point (``Cursor.adopt``)."""

    __slots__ = ("alone", "conn", "head", "moved", "opening", "suffix")

    conn: Connection
    opening: bytes
    """How the ``data`` of the stream's frames begins (``opening``)."""
    # Its stream's place in the connection's resume point (``dashboard.cursor.Place``), set by
    # ``Cursor.adopt`` before the fan-out can reach it:
    suffix: bytes
    head: bytes
    moved: bool
    alone: bool

    def deliver(self, run: Run) -> None:
        conn = self.conn
        write = conn.direct
        # While ``direct`` is set no follow of the connection holds a run (the task checked
        # before sleeping, and a run buffered wakes it): this one is caught up.
        if write is not None and run[0] == self.last + 1:
            topic: Topic = self.topic  # type: ignore[assignment]
            shared_run, made = topic.shared
            if shared_run is not run:
                made = _shared(self.opening, run)
                topic.shared = (run, made)
            alone = made[1]
            if alone is not None and self.alone:
                # The usual delivery: one event of the stream that alone moved since the
                # base; its id is the place's head and the event's. Nothing to take back
                # if the socket refuses it.
                head = self.head
                if not write(b"%x\r\nid: %s%s" % (len(head) + alone[2], head, alone[1])):
                    Subscription.deliver(self, run)
                    return
                self.suffix = alone[0]
            else:
                suffix, was_moved = self.suffix, self.moved
                if not write(conn.chunk(self, framed(made))):
                    conn.cursor.undo(self, suffix, was_moved)
                    Subscription.deliver(self, run)
                    return
                conn._maybe_rebase()
            conn.last_write = topic.read_at  # the loop time of this fan-out
            self.last = run[1]
            if run[3]:
                self.ended = True
                conn.wake()
            return
        Subscription.deliver(self, run)

    def _wake(self) -> None:
        self.conn.wake()


@dataclass(slots=True)
class Connection(CatchUp):
    """One ``/v1/events`` response: the streams it follows and its resume point."""

    hub: Hub
    log: EventLog
    bases: Bases
    cursor: Cursor
    streams: list[str]
    prefixes: list[str]
    limit: int
    keepalive: float
    subject: str | None = None
    """Who the connection's token names: it counts among each stream's viewers as such."""
    direct: Writer | None = None
    """While the connection's task waits: its socket, taking whole HTTP/1.1 chunks."""
    follows: dict[str, tuple[Follow, AbstractAsyncContextManager[Subscription]]] = field(
        default_factory=dict
    )
    done: set[str] = field(default_factory=set)
    """Streams that ended (their terminal event was sent), or that are not streams of
    events: not followed."""
    waiting: set[str] = field(default_factory=set)
    """Named streams that do not exist yet: followed once created."""
    new: list[str | None] = field(default_factory=list)
    over_limit_told: bool = False
    closed: bool = False
    ping_at: float | None = None
    """When the hub's keepalive task checks the sleeping connection next (None: not
    scheduled)."""
    ping_due: bool = False
    """A keepalive the socket did not take directly: the connection's task sends it."""
    _waker: asyncio.Future[None] | None = None
    _rebasing: asyncio.Task[None] | None = None
    last_write: float = 0.0
    _terminal: set[str] = field(default_factory=set)
    """Streams whose terminal event this connection was sent."""

    # --- for the fan-out ---

    def encode(self, place: Place, framed: list[Framed]) -> bytes:
        """The frames with this connection's ids (its resume point advanced by each)."""
        cursor = self.cursor
        out = []
        for suffix, body in framed:
            if cursor.move(place, suffix):  # alone moved: no id to join
                out.append(b"id: %s%s\n%s" % (place.head, suffix, body))
            else:
                out.append(b"id: %s\n%s" % (cursor.id, body))
        return b"".join(out)

    def chunk(self, place: Place, framed: list[Framed]) -> bytes:
        """``encode`` as one HTTP/1.1 chunk (what ``direct`` takes), made in one step for
        the usual run (one event)."""
        if len(framed) == 1:
            suffix, body = framed[0]
            if self.cursor.move(place, suffix):
                head = place.head
                size = len(head) + len(suffix) + len(body) + 5
                return b"%x\r\nid: %s%s\n%s\r\n" % (size, head, suffix, body)
            ident = self.cursor.id
            return b"%x\r\nid: %s\n%s\r\n" % (len(ident) + len(body) + 5, ident, body)
        data = self.encode(place, framed)
        return b"%x\r\n%s\r\n" % (len(data), data)

    def silent_since(self) -> float:
        """For the keepalive task: when the socket last got frames or a ping."""
        return self.last_write

    def ping(self, now: float) -> None:
        """From the keepalive task, while the connection sleeps and its socket has been
        silent: ``: ping`` straight to the socket, or else through the task."""
        w = self.direct
        if w is not None and w(PING_CHUNK):
            self.last_write = now
            return
        self.ping_due = True
        self.wake()

    def wake(self) -> None:
        self.direct = None
        w = self._waker
        if w is not None and not w.done():
            w.set_result(None)

    def on_new(self, stream_id: str | None) -> None:
        """A stream was created (None: announcements were missed; list again)."""
        if stream_id is None or (
            stream_id not in self.follows
            and stream_id not in self.done
            and (stream_id in self.waiting or covered(stream_id, self.prefixes))
        ):
            self.new.append(stream_id)
            self.wake()

    # --- the resume point ---

    def _maybe_rebase(self) -> None:
        if len(self.cursor.moved) > REBASE:
            self.rebase()

    def rebase(self) -> None:
        """Past ``REBASE`` moved positions, write a new base in the background; ids name
        it once it is written (a failed write just leaves the ids longer)."""
        if self._rebasing is not None:
            return
        token, snapshot = self.cursor.snapshot()

        async def write() -> None:
            try:
                await self.bases.write(token, snapshot)
                self.cursor.rebased(token, snapshot)
            except Exception as exc:
                log.warning("writing a resume point's base: %s", exc)
            finally:
                self._rebasing = None

        self._rebasing = asyncio.create_task(write(), name="mux-rebase")

    # --- the connection's task ---

    async def body(self, writer: Writer | None) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        self.last_write = loop.time()
        try:
            with self.hub.connection():
                async for chunk in self._body(writer):
                    yield chunk
        finally:
            await self._close()

    async def _body(self, writer: Writer | None) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        if self.prefixes or self.streams:
            async with self.hub.new_streams(self.on_new):
                async for chunk in self._run(writer, listing=bool(self.prefixes)):
                    self.last_write = loop.time()
                    yield chunk
        else:
            async for chunk in self._run(writer, listing=False):
                self.last_write = loop.time()
                yield chunk

    async def _run(self, writer: Writer | None, *, listing: bool) -> AsyncIterator[bytes]:
        targets = list(self.streams)
        if listing:
            targets += await self._listed()
        async for chunk in self._add(list(dict.fromkeys(targets))):
            yield chunk
        await self._based(1)  # caught up: live ids name a base and their stream alone
        while not self.closed and not self.hub.closing:
            if not self.follows and not self.prefixes and not self.waiting and not self.new:
                return  # every stream ended
            if not await self._wait(writer) or self.ping_due:
                self.ping_due = False
                yield PING
                continue
            async for chunk in self._work():
                yield chunk

    async def _listed(self) -> list[str]:
        found: list[str] = []
        for prefix in self.prefixes:
            found += await list_prefix(self.log.redis, prefix, self.limit)
        return found

    async def _wait(self, writer: Writer | None) -> bool:
        """Wait for work; False once the socket has been silent a keepalive's worth.
        With a writer, the socket is the fan-out's meanwhile and the hub's keepalive task
        pings it when it falls silent (``keepalive.py``), as it does a single-stream
        viewer's: a sleeping connection has no timer, and its task is not woken to send
        a ping. What the fan-out writes counts as traffic: a connection whose streams are
        busy is never pinged."""
        if self._pending():
            return True
        loop = asyncio.get_running_loop()
        self._waker = loop.create_future()
        try:
            if writer is not None:
                self.direct = writer
                self.hub.keepalive.schedule(self, self.last_write)
                await self._waker
                return True
            silent = self.keepalive - (loop.time() - self.last_write)
            if silent <= 0:
                return False
            try:
                async with asyncio.timeout(silent):
                    await self._waker
                return True
            except TimeoutError:
                return self._pending()
        finally:
            self.direct = None
            self._waker = None

    def _pending(self) -> bool:
        return bool(self.new) or any(
            f._buf or f.overflowed or f.closed or f.ended for f, _ in self.follows.values()
        )

    async def _work(self) -> AsyncIterator[bytes]:
        new, self.new = self.new, []
        for stream_id in new:
            if stream_id is None:
                listed = await self._listed()
                fresh = [s for s in listed if s not in self.follows and s not in self.done]
                async for chunk in self._add(fresh):
                    yield chunk
            elif stream_id not in self.follows and stream_id not in self.done:
                self.waiting.discard(stream_id)
                async for chunk in self._add([stream_id]):
                    yield chunk
        for stream_id, (follow, _) in list(self.follows.items()):
            if follow.closed:
                self.closed = True  # the hub drained, or the stream went back: reconnect
                return
            if follow.overflowed:
                follow.overflowed = False
                follow.take()
                async for chunk in self._history(stream_id, follow, None):
                    yield chunk
            elif follow._buf:
                async for chunk in self._buffered(stream_id, follow):
                    yield chunk
            if follow.ended:
                await self._drop(stream_id)

    # --- one stream ---

    async def _subscribe(self, stream_id: str, info: StreamInfo, seq: int) -> None:
        conn = self

        begins = opening(stream_id)

        def make(limit: int, topic: Topic, keepalive: Keepalive) -> Subscription:
            follow = Follow(limit, topic, keepalive)
            follow.conn = conn
            follow.opening = begins
            conn.cursor.adopt(stream_id, follow)
            follow.last = seq
            return follow

        cm = self.hub.subscribe(
            stream_id, info.last_seq, info.tag, make=make, subject=self.subject, own=False
        )
        follow = await cm.__aenter__()
        assert isinstance(follow, Follow)
        self.follows[stream_id] = (follow, cm)

    async def _drop(self, stream_id: str) -> None:
        _, cm = self.follows.pop(stream_id)
        self.done.add(stream_id)
        self.cursor.adopt(stream_id, Mark())  # the place outlives the subscription
        await cm.__aexit__(None, None, None)

    def _frames(self, stream_id: str, events: Iterable[Event]) -> bytes:
        out = []
        for event in events:
            self.cursor.advance(stream_id, event.seq, event.tag)
            out.append(b"id: %s\n%s" % (self.cursor.id, frame(stream_id, event)))
            if event.terminal:
                self._terminal.add(stream_id)
        self._maybe_rebase()
        return b"".join(out)

    async def _buffered(self, stream_id: str, follow: Follow) -> AsyncIterator[bytes]:
        for run in follow.take():
            if run[1] <= follow.last:
                continue
            if run[0] > follow.last + 1:  # a gap: what the log holds up to the run's end
                async for chunk in self._history(stream_id, follow, run[1]):
                    yield chunk
                if follow.last < run[1] and not follow.ended:  # (a malformed event ends it)
                    self.closed = True  # the log no longer holds what was announced
                    return
            else:
                events = [e for e in run_events(run) if e.seq > follow.last]
                yield self._frames(stream_id, events)
                follow.last = run[1]
                follow.ended = run[3] or stream_id in self._terminal
            if follow.ended:
                return

    async def _close(self) -> None:
        for stream_id in list(self.follows):
            with contextlib.suppress(Exception):
                await self._drop(stream_id)
        if self._rebasing is not None:
            self._rebasing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._rebasing
