"""Live reads of Durable Streams, SSE and long-poll, on the hub that serves every other
viewer: no second fan-out, and no Redis read per reader per event.

A reader is a ``Subscription`` of the stream's topic whose runs are encoded its own way
(an SSE ``data`` event and its ``control`` event), once per run for all readers sharing
a mode and cursor (``Topic.encoded``), written straight to caught-up sockets. A
long-poll takes the first run past its offset and leaves. Runs come as Durable Stream
entries or as a stream of events' SSE frames (``subscription.Form``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from broadcaster.core.events import malformed
from broadcaster.core.keys import CLOSE, DATA
from broadcaster.core.sse import Writer
from broadcaster.durable import protocol
from broadcaster.durable.protocol import Mode
from broadcaster.durable.storage import DurableLog, Entry, State
from broadcaster.fanout.hub import Hub
from broadcaster.fanout.keepalive import Keepalive
from broadcaster.fanout.subscription import Form, Run, Subscription, Topic
from broadcaster.fanout.viewer import wait_for_work

_NOW = "now"
"""In a run's cache (``Topic.encoded``), the cursor interval of the protocol's clock when
the run came: one for all the readers of the run (its other keys are tuples)."""

PAGE_ENTRIES = 500
PAGE_BYTES = 256 * 1024
"""A catch-up page (a GET, or an SSE reader's history) aims at this size."""


def entries_of(form: Form, run: Run) -> list[Entry]:
    """The entries a run carries, with the closure marker after a terminal event
    (``closing``); what cannot be read as the append script writes it ends the entries
    with an ``error`` message and the marker (``unreadable``), as ``dslog.read`` does."""
    first, _, body, terminal = run
    out: list[Entry] = []
    if form == "ds":
        at, seq = 0, first
        while at < len(body):
            nl = body.find(b"\n", at)
            tag, _, size = body[at:nl].partition(b" ")
            if nl < 0 or not size.isdigit():
                return out + unreadable(seq)
            end = nl + 1 + int(size)
            out.append(Entry(seq, DATA, body[nl + 1 : end], tag.decode(errors="replace")))
            at, seq = end, seq + 1
        if terminal and out:
            marker = out.pop()
            out.append(Entry(marker.seq, CLOSE, b"", marker.tag))
        return out
    seq = first
    for frame in body.split(b"\n\n"):
        if not frame.startswith(b"id: "):
            continue  # [DONE], or nothing
        id_line, _, rest = frame.partition(b"\n")
        event_seq, _, tag = id_line[4:].partition(b".")
        event_line, _, data_line = rest.partition(b"\n")
        if not (
            event_seq.isdigit()
            and event_line.startswith(b"event: ")
            and data_line.startswith(b"data: ")
        ):
            return out + unreadable(int(event_seq) if event_seq.isdigit() else seq)
        seq = int(event_seq) + 1
        out.append(Entry(seq - 1, DATA, data_line[6:], tag.decode(errors="replace")))
    return closing(out) if terminal else out


def unreadable(seq: int) -> list[Entry]:
    """In place of entry ``seq``, which cannot be read: the ``error`` message and the
    closure marker a malformed stored entry is read as."""
    return [Entry(seq, DATA, malformed(seq).data, ""), Entry(seq, CLOSE, b"", "")]


def closing(entries: list[Entry]) -> list[Entry]:
    """``entries`` of a stream of events that end with its terminal event, closed: the
    closure marker, at the terminal event's seq (such a stream has no seq of its own for
    it), so that readers say ``streamClosed`` / ``Stream-Closed`` there and then."""
    if not entries or not entries[-1].is_data:
        return entries
    last = entries[-1]
    return [*entries, Entry(last.seq, CLOSE, b"", last.tag)]


@dataclass(frozen=True, slots=True)
class Position:
    """Where a reader is: the seq and tag of the last data entry it has."""

    seq: int
    tag: str

    @property
    def offset(self) -> str:
        return protocol.format_offset(self.seq, self.tag)


def encode(
    mode: Mode, entries: list[Entry], at: Position, cursor: str, *, up_to_date: bool
) -> tuple[bytes, Position, bool]:
    """The SSE events for ``entries`` read by a reader at ``at``: a ``data`` event (if any
    data) and its ``control``; the reader's new position, and whether the stream closed."""
    data = [e for e in entries if e.is_data and e.seq > at.seq]
    closed = bool(entries) and not entries[-1].is_data
    if data:
        at = Position(data[-1].seq, data[-1].tag)
    out = protocol.sse_data(mode, [e.data for e in data]) if data else b""
    control = protocol.sse_control(at.offset, cursor, up_to_date=up_to_date, closed=closed)
    return out + control, at, closed


class Reader(Subscription):
    """A Durable Streams reader of a topic: its runs become ``data``/``control`` events."""

    __slots__ = ("at", "floor", "mode", "name")

    def __init__(self, limit: int, topic: Topic, keepalive: Keepalive) -> None:
        super().__init__(limit, topic, keepalive)
        self.name = topic.stream_id
        self.mode: Mode = "json"
        self.at = Position(0, "")
        self.floor = 0
        """The cursor this reader's control events never go below (its own cursor came
        back ahead of the current interval: cursors only grow)."""

    def cursor(self) -> str:
        current = protocol.current_cursor()
        return str(current if current >= self.floor else self.floor)

    def deliver(self, run: Run) -> None:
        """As ``Subscription.deliver``, with the run encoded for this reader: once for
        every reader of the topic at the same position, in the same mode, with the same
        cursor (``Topic.encoded``).

        This runs once per reader per run, and besides the write it is most of what a
        live reader costs (the SSE route's viewers do none of it): the clock's cursor is
        therefore read once per run, not per reader, and the cache's key is made of
        strings and ints, whose hashes are C (a ``Position``'s is a Python function)."""
        w = self.direct
        topic = self.topic
        if w is not None and topic is not None and run[0] == self.last + 1:
            cached_run, cache = topic.encoded
            if cached_run is not run:
                cache = {_NOW: protocol.current_cursor()}
                topic.encoded = (run, cache)
            current: int = cache[_NOW]
            cursor = current if current >= self.floor else self.floor
            at = self.at
            key = (self.mode, cursor, at.seq, at.tag)
            hit = cache.get(key)
            if hit is None:
                entries = entries_of(topic.form, run)
                hit = cache[key] = encode(self.mode, entries, at, str(cursor), up_to_date=True)
            frames, at, closed = hit
            if w(frames):
                self.last = run[1]
                self.at = at
                if closed:
                    self.direct = None
                    self.ended = True
                    self._wake()
                return
        self.direct = None
        Subscription.deliver(self, run)


async def sse(
    hub: Hub,
    log: DurableLog,
    *,
    state: State,
    reader_at: Position,
    mode: Mode,
    floor: int,
    name: str,
    writer: Writer | None,
) -> AsyncIterator[bytes]:
    """An SSE reader from ``reader_at``: the history in pages (a ``data`` and a
    ``control`` event each), then live runs, until the stream closes or the hub drains."""
    form: Form = "ds" if state.kind == "ds" else "sse"

    def make(limit: int, topic: Topic, keepalive: Keepalive) -> Subscription:
        reader = Reader(limit, topic, keepalive)
        reader.mode, reader.at, reader.floor = mode, reader_at, floor
        reader.last = reader_at.seq
        return reader

    async with hub.subscribe(name, state.seq, state.tag, form=form, make=make) as sub:
        assert isinstance(sub, Reader)
        async for chunk in _history(log, sub, None, first=True):
            yield chunk
        keepalive = hub.config.keepalive
        while not (sub.ended or sub.closed):
            woke = await wait_for_work(sub, writer, keepalive)
            if sub.closed or sub.ended:
                return
            if not woke or sub.ping_due:
                sub.ping_due = False
                yield b": ping\n\n"
            elif sub.overflowed:
                sub.overflowed = False
                sub.take()
                async for chunk in _history(log, sub, None):
                    yield chunk
            else:
                async for chunk in _buffered(log, sub):
                    yield chunk


async def _history(
    log: DurableLog, sub: Reader, until: int | None, *, first: bool = False
) -> AsyncIterator[bytes]:
    """What the log holds after the reader's position (up to ``until``), a page at a
    time, each a ``data`` and a ``control`` event; ``first``: a ``control`` event even
    when there is nothing (a new reader learns the tail, and whether it is closed)."""
    while until is None or sub.last < until:
        state, entries = await log.read(sub.name, sub.last, PAGE_ENTRIES, PAGE_BYTES)
        if state is None or state.deleted:
            sub.close()  # deleted meanwhile: the reader learns 404 or 410 when it returns
            return
        if until is not None:
            entries = [e for e in entries if e.seq <= until]
        if not entries:
            if first:
                yield protocol.sse_control(
                    sub.at.offset, sub.cursor(), up_to_date=True, closed=state.closed
                )
                sub.ended = state.closed
            return
        first = False
        up_to_date = entries[-1].seq >= state.seq
        if up_to_date and state.closed:
            entries = closing(entries)  # an ended stream of events: its terminal is data
        frames, sub.at, closed = encode(
            sub.mode, entries, sub.at, sub.cursor(), up_to_date=up_to_date
        )
        sub.last = entries[-1].seq
        yield frames
        if closed:
            sub.ended = True
            return
        if up_to_date:
            return


async def _buffered(log: DurableLog, sub: Reader) -> AsyncIterator[bytes]:
    """The runs buffered for a reader that was busy; a gap is read from the log."""
    assert sub.topic is not None
    form = sub.topic.form
    for run in sub.take():
        if run[1] <= sub.last:
            continue
        if run[0] > sub.last + 1:
            async for chunk in _history(log, sub, run[1]):
                yield chunk
            if sub.ended:
                return
            if sub.last < run[1]:
                sub.close()  # the log no longer holds what was announced: start over
                return
            continue
        entries = [e for e in entries_of(form, run) if e.seq > sub.last]
        frames, sub.at, closed = encode(sub.mode, entries, sub.at, sub.cursor(), up_to_date=True)
        sub.last = run[1]
        yield frames
        if closed:
            sub.ended = True
            return


@dataclass(frozen=True, slots=True)
class Polled:
    """A long-poll's answer: the stream's state when last read (None: no stream), the
    entries past the reader's offset (none: it timed out, or the stream closed), and the
    reader's offset after them."""

    state: State | None
    entries: list[Entry]
    at: Position

    @property
    def closed(self) -> bool:
        return bool(self.entries) and not self.entries[-1].is_data


async def long_poll(
    hub: Hub,
    log: DurableLog,
    *,
    name: str,
    after: int | None,
    wait_seconds: float,
    known: Callable[[State], bool] = lambda state: True,
) -> Polled:
    """Wait up to ``wait_seconds`` for entries after seq ``after`` (None: the tail); at once
    when ``known`` says the stream does not hold the offset. A stream not watched here is
    read, subscribed and read again, and stays watched a while for the next poll."""
    if hub.warm(name):
        async with hub.subscribe(name, 0, counted=False) as sub:
            state, entries = await log.read(
                name, after or 0, PAGE_ENTRIES if after is not None else 0, PAGE_BYTES, touch=True
            )
            if state is not None and not known(state):
                return _polled(state, [], after or 0)
            return await _settle_or_wait(log, sub, state, entries, after, wait_seconds)
    state, entries = await log.read(
        name, after or 0, PAGE_ENTRIES if after is not None else 0, PAGE_BYTES, touch=True
    )
    at = after if after is not None else (state.tail if state else 0)
    if state is not None and not known(state):
        return _polled(state, [], at)
    if state is None or state.deleted or state.pending or entries or state.closed:
        return _polled(state, entries, at)
    form: Form = "ds" if state.kind == "ds" else "sse"
    async with hub.subscribe(name, state.seq, state.tag, form=form, counted=False) as sub:
        again, entries = await log.read(name, at, PAGE_ENTRIES, PAGE_BYTES)
        return await _settle_or_wait(log, sub, again, entries, at, wait_seconds)


def _polled(state: State | None, entries: list[Entry], after: int) -> Polled:
    data = [e for e in entries if e.is_data]
    if data:
        return Polled(state, entries, Position(data[-1].seq, data[-1].tag))
    tag = state.tail_tag if state is not None and after == state.tail else ""
    if state is not None and after != state.tail:
        tag = state.tag_at
    return Polled(state, entries, Position(after, tag))


async def _settle_or_wait(  # noqa: PLR0917
    log: DurableLog,
    sub: Subscription,
    state: State | None,
    entries: list[Entry],
    after: int | None,
    wait_seconds: float,
) -> Polled:
    at = after if after is not None else (state.tail if state else 0)
    if state is None or state.deleted or state.pending or entries or state.closed:
        return _polled(state, entries, at)
    if at != state.tail:
        return _polled(state, entries, at)  # behind or ahead of the tail: the caller judges
    sub.last = state.seq
    try:
        async with asyncio.timeout(wait_seconds):
            while True:
                await sub.wait(None)
                if sub.closed:
                    break
                runs = sub.take()
                if sub.overflowed or any(r[0] > sub.last + 1 for r in runs):
                    sub.overflowed = False
                    assert sub.topic is not None
                    state, entries = await log.read(
                        sub.topic.stream_id, at, PAGE_ENTRIES, PAGE_BYTES
                    )
                    if entries or state is None or state.closed:
                        return _polled(state, entries, at)
                    continue
                assert sub.topic is not None
                got = [e for r in runs for e in entries_of(sub.topic.form, r) if e.seq > at]
                if got:
                    return _polled(state, got, at)
    except TimeoutError:
        pass
    return _polled(state, [], at)
