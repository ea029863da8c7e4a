"""Many streams on one SSE connection (``GET /v1/events``): a connection is one viewer of
each stream it follows, on the hub's own topics, so an event costs Redis what it costs
for any viewer, and a prefix's new streams are heard of from their creation.

Each frame is the single-stream route's, its ``data`` wrapped as ``{"stream", "seq",
"event"}`` (once per run for every connection, ``Topic.shared``) and its ``id`` the
connection's resume point (``dashboard/cursor.py``), the only part made per connection.
The connection is one class: the fan-out's hooks, then its task, whose catch-up reads
the streams it starts to follow together, in compacted pages, with a base written
between streams so that ids stay short. ARCHITECTURE.md, "Many streams on one
connection".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from broadcaster.core.eventlog import FIRST_PAGE, EventLog, StreamInfo
from broadcaster.core.events import Event
from broadcaster.core.sse import Writer
from broadcaster.dashboard.cursor import (
    REBASE,
    Bases,
    Cursor,
    Mark,
    Place,
    covered,
    list_prefix,
    position_of,
)
from broadcaster.dashboard.wrapping import Framed, _shared, frame, framed, opening, run_events
from broadcaster.fanout.compact import Folder
from broadcaster.fanout.hub import Hub
from broadcaster.fanout.keepalive import Keepalive
from broadcaster.fanout.subscription import Run, Subscription, Topic

log = logging.getLogger("broadcaster.mux")

PING = b": ping\n\n"
PING_CHUNK = b"%x\r\n%s\r\n" % (len(PING), PING)
"""``PING`` as the HTTP/1.1 chunk the keepalive task writes to a sleeping connection."""
ADD_AT_ONCE = 100
"""Streams whose states, subscriptions and first pages a connection reads together."""


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
class Connection:
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
        """Wait for work; False once the socket has been silent a keepalive's worth. With a
        writer the socket is the fan-out's meanwhile and the hub's keepalive task pings it, so a
        sleeping connection has no timer; what the fan-out writes counts as traffic."""
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

    # --- the catch-up: streams it starts to follow, and their histories ---

    async def _add(self, stream_ids: list[str]) -> AsyncIterator[bytes]:
        """Follow ``stream_ids``: up to ``ADD_AT_ONCE`` at a time, their states, their
        subscriptions and the first page of each one's history are read together, so a
        dashboard of 50 streams opens in three round trips to Redis, not 150."""
        for i in range(0, len(stream_ids), ADD_AT_ONCE):
            joining: list[tuple[str, StreamInfo, int]] = []
            batch = stream_ids[i : i + ADD_AT_ONCE]
            for stream_id, info in zip(batch, await self.log.infos(batch), strict=True):
                if len(self.follows) + len(self.done) + len(joining) >= self.limit:
                    if not self.over_limit_told:
                        self.over_limit_told = True
                        yield _limit_frame(self.limit)
                    break
                if info is None:
                    if stream_id in self.streams:  # named, not created yet: followed once it is
                        self.waiting.add(stream_id)
                    continue
                if info.kind == "ds":
                    self.done.add(stream_id)  # a Durable Stream holds no events
                    continue
                at = self.cursor.position(stream_id)
                seq = at[0] if at is not None else 0
                if info.ended and seq < info.last_seq:
                    async for chunk in self._replay(stream_id, seq, None):
                        yield chunk
                if info.ended:
                    self.done.add(stream_id)
                    continue
                joining.append((stream_id, info, seq))
            async for chunk in self._join(joining):
                yield chunk

    async def _join(self, joining: list[tuple[str, StreamInfo, int]]) -> AsyncIterator[bytes]:
        """Subscribe to each (the subscriptions confirmed together), then send each one's
        history after its position, its first page read for all at once."""
        try:
            async with asyncio.TaskGroup() as tg:
                for stream_id, info, seq in joining:
                    tg.create_task(self._subscribe(stream_id, info, seq))
        except* Exception as group:
            raise group.exceptions[0] from None
        follows = [(sid, self.follows[sid][0]) for sid, _, _ in joining]
        firsts = await self.log.read_pages([(sid, f.last) for sid, f in follows], FIRST_PAGE)
        for (stream_id, follow), first in zip(follows, firsts, strict=True):
            async for chunk in self._history(stream_id, follow, None, compact=True, first=first):
                yield chunk
            if follow.ended:
                await self._drop(stream_id)

    async def _history(
        self,
        stream_id: str,
        follow: Follow,
        until: int | None,
        *,
        compact: bool = False,
        first: list[Event] | None = None,
    ) -> AsyncIterator[bytes]:
        replay = self._replay(stream_id, follow.last, until, compact=compact, first=first)
        async for chunk in replay:
            position = position_of(follow)
            assert position is not None
            follow.last = position[0]
            follow.ended = stream_id in self._terminal
            yield chunk

    async def _replay(
        self,
        stream_id: str,
        after: int,
        until: int | None,
        *,
        compact: bool = True,
        first: list[Event] | None = None,
    ) -> AsyncIterator[bytes]:
        """The stream's events after ``after`` from the log, in pages, as frames; the
        first page already read when ``first`` is given (``FIRST_PAGE`` events at most)."""
        folder = Folder() if compact else None
        async for page in self._pages(stream_id, after, until, first):
            events = folder.feed(page) if folder is not None else page
            if events:
                yield self._frames(stream_id, events)
                await self._based(REBASE)
        if folder is not None:
            rest = folder.flush()
            if rest:
                yield self._frames(stream_id, rest)
                await self._based(REBASE)

    async def _based(self, past: int) -> None:
        """While more than ``past`` positions moved since the base, write one (or wait for the
        one being written), so that later frames name it and ids stay short: between replays
        (``REBASE``) and once caught up (1). A failed write leaves the ids longer."""
        while len(self.cursor.moved) > past:
            token = self.cursor.token
            self.rebase()
            assert self._rebasing is not None
            await asyncio.shield(self._rebasing)
            if self.cursor.token == token:
                return  # not written (logged): the ids stay longer

    async def _pages(
        self, stream_id: str, after: int, until: int | None, first: list[Event] | None
    ) -> AsyncIterator[list[Event]]:
        if first is not None:
            if first:
                yield first
            if len(first) < FIRST_PAGE:
                return
            after = first[-1].seq
        async for page in self.log.read_after(stream_id, after, until):
            yield page

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


def _limit_frame(limit: int) -> bytes:
    data = json.dumps({"type": "streams-limit", "data": {"limit": limit}})
    return b"event: streams-limit\ndata: %s\n\n" % data.encode()
