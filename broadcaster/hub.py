"""The per-process reader of Redis and the fan-out to viewers. Knows nothing of HTTP.

One task per front-end process reads every open stream with one blocking ``XREAD``
(Redis commands per event do not depend on the number of viewers). Each event is encoded
to SSE bytes once and the same ``bytes`` object is pushed into every viewer's bounded
buffer.

Delivery follows one rule, *deliver by seq*: a viewer remembers the last seq it sent;
an event whose seq is not greater is dropped; a seq more than one greater is a gap, which
the viewer fills by reading the range from Redis. With that rule

* the replay/live seam needs no lock: a viewer registers for live events *first*, then
  replays from Redis, and the rule drops whatever both paths bring;
* a slow viewer's full buffer simply drops live events (and notes it); the viewer later
  catches up from Redis at its own pace, so nobody waits for it and nothing is lost;
* after a Redis error the reader resumes from the last id it saw for each stream, never
  from ``$``.

A new stream must join the blocked ``XREAD``: the hub wakes the reader with
``CLIENT UNBLOCK`` (which makes the blocked call return as if it had timed out) and
repeats it until the reader has sent a read that includes the new stream, which closes
the race where the unblock arrives just before the read.

On a Redis Cluster one ``XREAD`` may only cover streams of one slot, so there is one
reader per *slot group* (see ``readers.py``); on a single Redis, one group holds all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextvars import Context
from dataclasses import dataclass
from typing import cast

from broadcaster import keys, sse
from broadcaster.connection import REDIS_ERRORS
from broadcaster.log import EventLog, StreamInfo, entries_to_events
from broadcaster.metrics import FrontendMetrics
from broadcaster.readers import ReadRoute
from broadcaster.shared_replay import SharedHistory

log = logging.getLogger("broadcaster.hub")

_Item = tuple[int, bytes, bool]  # seq, encoded frame, terminal
_XReadReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


Writer = Callable[[bytes], bool]
"""Writes SSE bytes to one viewer's socket at once, after everything it was given before;
returns False, having written nothing, when it cannot (the socket's buffer is full)."""


class Subscription:
    """One viewer's bounded buffer of live frames. Never blocks the reader: when full,
    the newest frames are dropped and ``overflowed`` tells the viewer to refill from Redis.

    While its viewer is caught up and idle, ``direct`` is the viewer's ``Writer`` and the
    reader writes new frames straight to the socket, with no task wakeup and no copy per
    frame: the common case, where fan-out costs one ``write`` per viewer per read. The
    viewer's task sets ``direct`` only while it waits, so the two never interleave."""

    __slots__ = (
        "_buf",
        "_limit",
        "_waiter",
        "closed",
        "direct",
        "ended",
        "last",
        "overflowed",
        "ping_due",
        "quiet_since",
    )

    def __init__(self, limit: int) -> None:
        self._buf: deque[_Item] = deque()
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None
        self.overflowed = False
        self.closed = False
        self.ended = False
        """The terminal event went out through ``direct``: the response is to end."""
        self.last = 0
        """The seq of the last event this viewer was sent (or handed to send)."""
        self.direct: Writer | None = None
        self.quiet_since = 0.0
        """Loop time it went direct, or of its last ping: with its topic's last read,
        how long its socket has been silent."""
        self.ping_due = False
        """A keepalive the socket did not take directly: the viewer's task sends it."""

    def push(self, item: _Item) -> None:
        if len(self._buf) >= self._limit:
            self.overflowed = True
        else:
            self._buf.append(item)
        self._wake()

    def deliver(self, items: list[_Item], payload: bytes) -> None:
        """New frames of a read, in seq order; ``payload`` is their frames joined."""
        w = self.direct
        if w is not None and items[0][0] == self.last + 1 and w(payload):
            self.last = items[-1][0]
            if items[-1][2]:
                self.direct = None
                self.ended = True
                self._wake()
            return
        self.direct = None
        for item in items:
            self.push(item)

    def ping(self, now: float) -> None:
        """A keepalive, straight to the socket, or else through the viewer's task."""
        w = self.direct
        if w is not None and w(sse.PING):
            self.quiet_since = now
            return
        self.direct = None
        self.ping_due = True
        self._wake()

    def close(self) -> None:
        self.closed = True
        self.direct = None
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def take(self) -> list[_Item]:
        items = list(self._buf)
        self._buf.clear()
        return items

    def idle(self) -> bool:
        """Nothing for the viewer's task to do: it may hand the socket to the reader."""
        return not (self._buf or self.overflowed or self.closed or self.ended or self.ping_due)

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


class _Topic:
    """A stream this process reads, with the seq the reader has seen up to."""

    __slots__ = ("cursor", "group", "key", "read_at", "subs", "tag")

    def __init__(self, key: str, cursor: int, group: int) -> None:
        self.key = key
        self.cursor = cursor
        self.group = group
        self.tag = ""  # the history tag of the event at ``cursor``, once the reader saw it
        self.read_at = 0.0  # loop time of the last read that brought it new events
        self.subs: set[Subscription] = set()


class _Group:
    """The streams one blocking ``XREAD`` covers, and that read's state."""

    __slots__ = ("client_id", "id", "nonempty", "recheck", "sent_version", "topics", "version")

    def __init__(self, group_id: int) -> None:
        self.id = group_id
        self.topics: dict[str, _Topic] = {}
        self.version = 0  # bumped when a stream joins; the read in flight has sent_version
        self.sent_version = 0
        self.client_id: int | None = None
        self.recheck = False  # after a lost connection: did Redis lose writes?
        self.nonempty = asyncio.Event()


@dataclass(frozen=True, slots=True)
class HubConfig:
    block_ms: int = 5000
    """How long one XREAD blocks; bounds how long a departed stream stays in the read."""
    read_count: int = 200
    """Entries per stream per XREAD: bounds the memory of one read of large events."""
    viewer_buffer: int = 1024
    """Live frames buffered per viewer before it falls back to reading Redis itself."""
    keepalive: float = 15.0
    """Most seconds of silence before a ``: ping`` comment (caught-up viewers get it
    after 3/4 of this to all of it: one hub task checks them every quarter)."""


class Hub:
    """Owns the reader task. Use ``async with Hub(...)`` from the app's lifespan."""

    def __init__(
        self,
        route: ReadRoute,
        log_: EventLog,
        config: HubConfig | None = None,
        metrics: FrontendMetrics | None = None,
    ) -> None:
        """``route`` says where the blocking reads go (``readers.route_for``: one
        connection, or one per Cluster slot group). The caller closes it."""
        self._route = route
        self.log = log_
        self.config = config or HubConfig()
        self.metrics = metrics
        self._topics: dict[str, _Topic] = {}
        self._by_key: dict[bytes, _Topic] = {}
        self._groups: dict[int, _Group] = {}
        self._histories: dict[tuple[str, int], SharedHistory] = {}
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._entered = False
        self.closing = False
        self._viewers = 0  # kept by subscribe: read on every connect (the connection limit)
        self._stopped = False
        self.redis_ok = False
        self.reads = 0

    # --- lifecycle ---

    async def __aenter__(self) -> Hub:
        self._entered = True
        self._tasks = [
            asyncio.create_task(self._unblock_loop(), name="hub-unblocker"),
            asyncio.create_task(self._keepalive_loop(), name="hub-keepalive"),
        ]
        for group in self._groups.values():
            self._start_reader(group)
        return self

    def _start_reader(self, group: _Group) -> None:
        # One reader task per group, created with the group and awaited on exit (at most
        # keys.SLOT_GROUPS on a Cluster, one on a single Redis). A fresh context: the
        # reader serves every stream of its group, not the one whose viewer created it
        # (whose id the log lines of this task would otherwise carry).
        if self._entered and not self._stopped:
            task = asyncio.create_task(
                self._read_loop(group), name=f"hub-reader-{group.id}", context=Context()
            )
            self._tasks.append(task)

    async def __aexit__(self, *exc: object) -> None:
        self.drain()
        # The loops also check ``_stopped``: a cancel that lands inside redis-py while it
        # is reconnecting can be swallowed there, and shutdown must not depend on it.
        self._stopped = True
        for group in self._groups.values():
            group.nonempty.set()
        self._changed.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.wait(self._tasks)
        self._tasks = []

    def drain(self) -> None:
        """End every open response cleanly (shutdown): viewers reconnect elsewhere."""
        self.closing = True
        for topic in self._topics.values():
            for sub in topic.subs:
                sub.close()

    @property
    def viewers(self) -> int:
        return self._viewers

    @property
    def streams(self) -> int:
        return len(self._topics)

    def viewers_of(self, stream_id: str) -> int:
        topic = self._topics.get(stream_id)
        return len(topic.subs) if topic else 0

    # --- subscriptions ---

    @contextlib.asynccontextmanager
    async def subscribe(
        self, stream_id: str, known_seq: int, known_tag: str = ""
    ) -> AsyncIterator[Subscription]:
        """Receive live frames of ``stream_id``. ``known_seq`` is a seq the stream is
        known to have reached; the reader starts there if it is not reading it yet.
        ``known_tag`` is the history tag there, to notice a history that was rewritten
        after Redis lost writes (``_end_rewound_topics``)."""
        sub = Subscription(self.config.viewer_buffer)
        if self.closing:
            sub.close()
        topic = self._topics.get(stream_id)
        if topic is None:
            key = keys.log_key(stream_id)
            topic = _Topic(key, known_seq, self._route.group_of(key))
            topic.tag = known_tag
            self._topics[stream_id] = topic
            self._by_key[key.encode()] = topic
            group = self._groups.get(topic.group)
            if group is None:
                group = self._groups[topic.group] = _Group(topic.group)
                self._start_reader(group)
            group.topics[stream_id] = topic
            group.version += 1
            self._changed.set()
            group.nonempty.set()
        topic.subs.add(sub)
        self._viewers += 1
        try:
            yield sub
        finally:
            self._viewers -= 1
            topic.subs.discard(sub)
            if not topic.subs and self._topics.get(stream_id) is topic:
                # Dropped from the next read; the current one ends within block_ms.
                del self._topics[stream_id]
                del self._by_key[topic.key.encode()]
                del self._groups[topic.group].topics[stream_id]

    async def follow(
        self, stream_id: str, after: int, info: StreamInfo, writer: Writer | None = None
    ) -> AsyncIterator[bytes]:
        """SSE bytes for one viewer: every event with seq > ``after``, exactly once, in
        order; ``: ping`` during silences; ends after the terminal event (with its
        ``[DONE]``) or when the hub drains. Consecutive frames are joined into one chunk.

        With a ``writer`` (the viewer's socket), live frames that arrive while the viewer
        is caught up go straight to it from the reader and are not yielded here."""
        if info.ended:
            async for chunk in self._replay_ended(stream_id, after):
                yield chunk
            return
        async with self.subscribe(stream_id, info.last_seq, info.tag) as sub:
            sub.last = after
            async for chunk, seq_, ended in self._replay(stream_id, sub.last, None):
                sub.last = seq_
                yield chunk
                if ended:
                    return
            while True:
                if writer is not None and sub.idle():
                    # Live frames and keepalives now go straight to the socket, from the
                    # reader and from ``_keepalive_loop``: no timer, no wakeup, here.
                    sub.direct = writer
                    sub.quiet_since = asyncio.get_running_loop().time()
                    woke = await sub.wait(None)
                else:
                    woke = await sub.wait(self.config.keepalive)
                sub.direct = None
                if sub.closed or sub.ended:
                    return
                if not woke or sub.ping_due:
                    sub.ping_due = False
                    yield sse.PING
                    continue
                if sub.overflowed:
                    # Fell behind: drop the buffer and read from Redis at our own pace.
                    sub.overflowed = False
                    sub.take()
                    async for chunk, seq_, ended in self._replay(stream_id, sub.last, None):
                        sub.last = seq_
                        yield chunk
                        if ended:
                            return
                    continue
                out: list[bytes] = []
                for seq, frame, terminal in sub.take():
                    if seq <= sub.last:
                        continue
                    if seq > sub.last + 1:
                        # A gap: fill it from Redis before going on.
                        if out:
                            yield b"".join(out)
                            out = []
                        async for chunk, seq_, _end in self._replay(stream_id, sub.last, seq - 1):
                            sub.last = seq_
                            yield chunk
                        if sub.last != seq - 1:
                            log.warning(
                                "stream %s: events %d..%d missing from Redis; ending response",
                                stream_id,
                                sub.last + 1,
                                seq - 1,
                            )
                            return
                    out.append(frame)
                    sub.last = seq
                    if terminal:
                        yield b"".join(out)
                        return
                if out:
                    yield b"".join(out)

    async def _replay_ended(self, stream_id: str, after: int) -> AsyncIterator[bytes]:
        """An ended stream's history, read once for all the viewers replaying it at once."""
        key = (stream_id, after)
        history = self._histories.get(key)
        if history is None:
            history = SharedHistory(self._replay(stream_id, after, None))
            self._histories[key] = history
        history.users += 1
        try:
            async for chunk, _seq, _end in history.pages():
                yield chunk
        finally:
            history.users -= 1
            if history.users == 0:
                if self._histories.get(key) is history:
                    del self._histories[key]
                await history.aclose()

    async def _replay(
        self, stream_id: str, after: int, until: int | None
    ) -> AsyncIterator[tuple[bytes, int, bool]]:
        """Encoded pages read from Redis, each with its last seq and whether it ends."""
        pages = self.log.read_after(stream_id, after, until)
        m = self.metrics
        while True:
            started = time.perf_counter()
            page = await anext(pages, None)
            if page is None:
                return
            if m is not None:
                m.redis_read.observe(time.perf_counter() - started)
                m.replayed.inc(len(page))
            yield b"".join(sse.encode(e) for e in page), page[-1].seq, page[-1].terminal

    # --- the reader ---

    async def _read_loop(self, group: _Group) -> None:
        backoff = 0.05
        route = self._route
        while not self._stopped:
            if not group.topics:
                group.client_id = None
                with contextlib.suppress(*REDIS_ERRORS):
                    await route.idle(group.id)
                group.nonempty.clear()
                await group.nonempty.wait()
                continue
            try:
                if group.client_id is None:
                    group.client_id = await route.client_id(group.id)
                if group.recheck:
                    await self._end_rewound_topics(group)
                    group.recheck = False
                group.sent_version = group.version
                streams = {t.key: f"{t.cursor}-0" for t in group.topics.values()}
                if not streams:
                    continue  # its last viewer left while the connection was made
                resp = await route.xread(
                    group.id, streams, self.config.read_count, self.config.block_ms
                )
                self.reads += 1
                self.redis_ok = True
                backoff = 0.05
            except Exception as exc:
                # The connection is dropped and re-made on the next call, with a new id
                # (on a Cluster, to whichever node serves the slot by then). Whatever went
                # wrong, the reader goes on: one that died would leave its viewers waiting
                # for ever. Anything but Redis trouble is a bug, logged with its traceback.
                group.client_id = None
                group.recheck = True
                self.redis_ok = False
                if isinstance(exc, REDIS_ERRORS):
                    log.warning("reader: %s; retrying in %.2fs", exc, backoff)
                else:
                    log.exception("reader: unexpected error; retrying in %.2fs", backoff)
                with contextlib.suppress(*REDIS_ERRORS):
                    await route.failed(group.id, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            if resp:
                self._dispatch(cast(_XReadReply, resp))

    async def _end_rewound_topics(self, group: _Group) -> None:
        """Redis may have come back without its newest writes (no persistence, an older
        copy, a replica that was behind). A stream that now ends below the reader's
        cursor would leave its viewers waiting for ids that may never come; one written
        again differently past it (its history tag at the cursor changed) would show them
        a rewritten stream's events after the old ones. End those responses instead: each
        viewer reconnects with its ``Last-Event-ID`` and is told (409, or 404 if the
        stream is gone), or resumes if its producer wrote the same events again."""
        topics = list(group.topics.items())
        found = await self.log.positions([(sid, t.cursor) for sid, t in topics])
        for (_sid, topic), (seq, tag) in zip(topics, found, strict=True):
            if seq >= topic.cursor and (not topic.tag or tag == topic.tag):
                continue
            log.warning(
                "%s lost writes (at seq %d, it now ends at %d); ending %d response(s)",
                topic.key,
                topic.cursor,
                seq,
                len(topic.subs),
            )
            topic.cursor, topic.tag = seq, ""
            for sub in topic.subs:
                sub.close()

    def _dispatch(self, resp: _XReadReply) -> None:
        now = asyncio.get_running_loop().time()
        for key, entries in resp:
            topic = self._by_key.get(key)
            if topic is None:
                continue  # nobody watches it any more
            items: list[_Item] = []
            for event in entries_to_events(entries):
                if event.seq > topic.cursor:
                    topic.cursor, topic.tag = event.seq, event.tag
                    items.append((event.seq, sse.encode(event), event.terminal))
            if not items:
                continue
            # Encoded once, joined once: every viewer gets the same bytes in one write.
            payload = items[0][1] if len(items) == 1 else b"".join(i[1] for i in items)
            topic.read_at = now  # every viewer still direct after this was just written to
            for sub in topic.subs:
                sub.deliver(items, payload)
            if self.metrics is not None:
                self.metrics.delivered.inc(len(topic.subs) * len(items))

    async def _keepalive_loop(self) -> None:
        """``: ping`` to every caught-up viewer silent for 3/4 of ``keepalive`` or more,
        checked every quarter of it: at most ``keepalive`` of silence, one write per
        ping, and no timer or task wakeup per viewer."""
        loop = asyncio.get_running_loop()
        quarter = self.config.keepalive / 4
        while not self._stopped:
            await asyncio.sleep(quarter)
            now = loop.time()
            due = now - 3 * quarter
            for topic in self._topics.values():
                if topic.read_at > due:
                    continue  # its direct viewers got frames within the interval
                for sub in topic.subs:
                    if sub.direct is not None and sub.quiet_since <= due:
                        sub.ping(now)

    async def _unblock_loop(self) -> None:
        while not self._stopped:
            await self._changed.wait()
            self._changed.clear()
            while not self._stopped:
                behind = [
                    g for g in self._groups.values() if g.sent_version < g.version and g.topics
                ]
                if not behind:
                    break
                for g in behind:
                    cid = g.client_id
                    if cid is not None:
                        # On error the reader is failing too and will re-read on its own.
                        with contextlib.suppress(*REDIS_ERRORS):
                            await self._route.unblock(g.id, cid)
                await asyncio.sleep(0.005)
