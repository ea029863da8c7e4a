"""Many streams on one SSE connection (``GET /v1/events``): a connection is one viewer of
each stream it follows, on the hub's own topics, so an event costs Redis what it costs
for any viewer, and a prefix's new streams are heard of from their creation (one message
per stream created).

Each frame is the event as the single-stream route sends it, its ``data`` wrapped as
``{"stream", "seq", "event"}`` (made once per run for every connection following the
stream, ``Topic.encoded``), and its ``id`` the connection's resume point
(``core/mux.py``): the only part made per connection. While the connection's task waits
with nothing to do, live runs go straight to its socket from the fan-out, as for a
single-stream viewer; otherwise they wait in each stream's bounded buffer for the task.
A late joiner or a resume gets each stream's history (compacted: consecutive deltas of a
part folded), then the live events of all, in the order they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from broadcaster.core.compact import Folder
from broadcaster.core.events import Event
from broadcaster.core.log import EventLog
from broadcaster.core.mux import Bases, Cursor, covered, list_prefix
from broadcaster.fanout.hub import Hub
from broadcaster.fanout.keepalive import Keepalive
from broadcaster.fanout.subscription import Run, Subscription, Topic, Writer

log = logging.getLogger("broadcaster.mux")

PING = b": ping\n\n"


def frame(stream_id: str, event: Event) -> bytes:
    """One event as a frame of the connection, without its id."""
    return b'event: %s\ndata: {"stream":%s,"seq":%d,"event":%s}\n\n' % (
        event.type.encode(),
        json.dumps(stream_id).encode(),
        event.seq,
        event.data,
    )


def run_events(run: Run) -> list[Event]:
    """The events of a run of SSE frames (``id: <seq>.<tag>``, ``event:``, ``data:``)."""
    out = []
    for block in run[2].split(b"\n\n"):
        if not block.startswith(b"id: "):
            continue
        id_line, event_line, data_line = block.split(b"\n", 2)
        seq, _, tag = id_line[4:].partition(b".")
        out.append(Event(int(seq), event_line[7:].decode(), data_line[6:], tag.decode()))
    return out


def shared_frames(stream_id: str, topic: Topic, run: Run) -> list[tuple[Event, bytes]]:
    """A run's events and their frames, made once for every connection of the topic."""
    cached_run, cache = topic.encoded
    if cached_run is not run:
        cache = {}
        topic.encoded = (run, cache)
    made: list[tuple[Event, bytes]] | None = cache.get("mux")
    if made is None:
        made = cache["mux"] = [(e, frame(stream_id, e)) for e in run_events(run)]
    return made


class Follow(Subscription):
    """The connection's subscription to one of its streams."""

    __slots__ = ("conn",)

    conn: Connection

    def deliver(self, run: Run) -> None:
        conn = self.conn
        topic = self.topic
        caught_up = run[0] == self.last + 1 and not (self._buf or self.overflowed)
        if conn.direct is not None and topic is not None and caught_up:
            events = shared_frames(topic.stream_id, topic, run)
            data, undo = conn.encode(topic.stream_id, events)
            if conn.direct(data):
                conn.wrote()
                self.last = run[1]
                if run[3]:
                    self.ended = True
                    conn.wake()
                return
            undo()
        Subscription.deliver(self, run)

    def _wake(self) -> None:
        self.conn.wake()


@dataclass
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
    _waker: asyncio.Future[None] | None = None
    _rebasing: asyncio.Task[None] | None = None
    _last_write: float = 0.0
    _terminal: set[str] = field(default_factory=set)
    """Streams whose terminal event this connection was sent."""

    # --- for the fan-out ---

    def encode(self, stream_id: str, events: list[tuple[Event, bytes]]) -> tuple[bytes, Any]:
        """The frames of ``events`` with this connection's ids, and how to take the
        advance of its resume point back (the socket did not take them)."""
        before = self.cursor.positions.get(stream_id)
        out = []
        for event, body in events:
            self.cursor.advance(stream_id, event.seq, event.tag)
            out.append(b"id: %s\n%s" % (self.cursor.id.encode(), body))

        def undo() -> None:
            if before is None:
                self.cursor.positions.pop(stream_id, None)
                self.cursor.moved.pop(stream_id, None)
                self.cursor._id = None
            else:
                self.cursor.advance(stream_id, *before)

        return b"".join(out), undo

    def wrote(self) -> None:
        self._last_write = asyncio.get_running_loop().time()
        self._maybe_rebase()

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
        """Past ``REBASE`` moved positions, write a new base in the background; ids name
        it once it is written (a failed write just leaves the ids longer)."""
        if len(self.cursor.moved) <= 16 or self._rebasing is not None:
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
        self._last_write = loop.time()
        try:
            if self.prefixes or self.streams:
                async with self.hub.new_streams(self.on_new):
                    async for chunk in self._run(writer, listing=bool(self.prefixes)):
                        self._last_write = loop.time()
                        yield chunk
            else:
                async for chunk in self._run(writer, listing=False):
                    self._last_write = loop.time()
                    yield chunk
        finally:
            await self._close()

    async def _run(self, writer: Writer | None, *, listing: bool) -> AsyncIterator[bytes]:
        targets = list(self.streams)
        if listing:
            targets += await self._listed()
        for stream_id in dict.fromkeys(targets):
            async for chunk in self._add(stream_id):
                yield chunk
        while not self.closed and not self.hub.closing:
            if not self.follows and not self.prefixes and not self.waiting and not self.new:
                return  # every stream ended
            if not await self._wait(writer):
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
        """Wait for work, handing the socket to the fan-out meanwhile; False after a
        keepalive's worth of silence."""
        if self._pending():
            return True
        loop = asyncio.get_running_loop()
        self._waker = loop.create_future()
        self.direct = writer
        try:
            silent = self.keepalive - (loop.time() - self._last_write)
            async with asyncio.timeout(max(0.0, silent)):
                await self._waker
            return True
        except TimeoutError:
            self._last_write = loop.time()
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
                for listed in await self._listed():
                    if listed not in self.follows and listed not in self.done:
                        async for chunk in self._add(listed):
                            yield chunk
            elif stream_id not in self.follows and stream_id not in self.done:
                self.waiting.discard(stream_id)
                async for chunk in self._add(stream_id):
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

    async def _add(self, stream_id: str) -> AsyncIterator[bytes]:
        if len(self.follows) + len(self.done) >= self.limit:
            if not self.over_limit_told:
                self.over_limit_told = True
                yield _limit_frame(self.limit)
            return
        info = await self.log.info(stream_id)
        if info is None:
            if stream_id in self.streams:
                self.waiting.add(stream_id)  # named, not created yet: followed once it is
            return
        if info.kind == "ds":
            self.done.add(stream_id)  # a Durable Stream holds no events
            return
        seq = self.cursor.positions.get(stream_id, (0, ""))[0]
        if info.ended and seq >= info.last_seq:
            self.done.add(stream_id)
            return
        if info.ended:
            async for chunk in self._replay(stream_id, seq, None):
                yield chunk
            self.done.add(stream_id)
            return
        conn = self

        def make(limit: int, topic: Topic, keepalive: Keepalive) -> Subscription:
            follow = Follow(limit, topic, keepalive)
            follow.conn = conn
            follow.last = seq
            return follow

        cm = self.hub.subscribe(stream_id, info.last_seq, info.tag, make=make, subject=self.subject)
        follow = await cm.__aenter__()
        assert isinstance(follow, Follow)
        self.follows[stream_id] = (follow, cm)
        async for chunk in self._history(stream_id, follow, None, compact=True):
            yield chunk
        if follow.ended:
            await self._drop(stream_id)

    async def _drop(self, stream_id: str) -> None:
        follow, cm = self.follows.pop(stream_id)
        self.done.add(stream_id)
        await cm.__aexit__(None, None, None)
        del follow

    async def _history(
        self, stream_id: str, follow: Follow, until: int | None, *, compact: bool = False
    ) -> AsyncIterator[bytes]:
        async for chunk in self._replay(stream_id, follow.last, until, compact=compact):
            follow.last = self.cursor.positions[stream_id][0]
            follow.ended = stream_id in self._terminal
            yield chunk

    async def _replay(
        self, stream_id: str, after: int, until: int | None, *, compact: bool = True
    ) -> AsyncIterator[bytes]:
        """The stream's events after ``after`` from the log, in pages, as frames."""
        folder = Folder() if compact else None
        async for page in self.log.read_after(stream_id, after, until):
            events = folder.feed(page) if folder is not None else page
            if events:
                yield self._frames(stream_id, events)
        if folder is not None:
            rest = folder.flush()
            if rest:
                yield self._frames(stream_id, rest)

    def _frames(self, stream_id: str, events: Iterable[Event]) -> bytes:
        out = []
        for event in events:
            self.cursor.advance(stream_id, event.seq, event.tag)
            out.append(b"id: %s\n%s" % (self.cursor.id.encode(), frame(stream_id, event)))
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
                if follow.last < run[1]:
                    self.closed = True  # the log no longer holds what was announced
                    return
            else:
                events = [e for e in run_events(run) if e.seq > follow.last]
                yield self._frames(stream_id, events)
                follow.last = run[1]
                follow.ended = run[3]
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
