"""What a read of a Durable Stream sees: whether the stream is there, whether its history
holds the reader's offset, and the page a catch-up or a long-poll answers. A stream that
cannot be read raises an ``Unreadable``; the caller says so in its own terms.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import NamedTuple

from broadcaster.core.sse import Writer
from broadcaster.durable import live, protocol
from broadcaster.durable.protocol import Mode, Offset, ReadOffset
from broadcaster.durable.storage import DurableLog, Entry, State
from broadcaster.fanout.hub import Hub


class Unreadable(Exception):
    """A read that finds nothing to read."""


class NoStream(Unreadable):
    """No stream at the path, or a fork still being made there."""


class Deleted(Unreadable):
    """The stream was deleted, and streams forked from it live on."""


class OffsetGone(Unreadable):
    """The offset is not in the stream's history: beyond its tail, or of events Redis lost
    and that were written again differently (never a spliced read). The message says
    so."""


class BadOffset(Unreadable):
    """An offset at seq 0 with a history tag: no offset this server gives. The message
    says so."""


async def existing(log: DurableLog, name: str, state: State | None) -> State:
    """``state``, if it is a stream's: ``NoStream`` for none (or a fork still being made),
    ``Deleted`` for a soft-deleted one (unless its forks are all gone, and so is it)."""
    if state is None or state.pending:
        raise NoStream(name)
    if state.deleted:
        if await log.collect(name):
            raise NoStream(name)
        raise Deleted(name)
    return state


async def where(log: DurableLog, name: str) -> State:
    """Where the stream is, without reading it (nor renewing its TTL)."""
    state, _ = await log.read(name, 0)
    return await existing(log, name, state)


def described(name: str, state: State) -> dict[str, str]:
    """The headers that describe a stream (a ``HEAD``'s): its type, where it ends, whether
    it is closed, and its expiry; never cached."""
    next_offset = protocol.format_offset(state.tail, state.tail_tag)
    headers = {
        **protocol.typed_headers(state.content_type),
        protocol.NEXT: next_offset,
        "cache-control": "no-store",
        "etag": protocol.etag(name, "-1", next_offset, state.closed),
    }
    if state.closed:
        headers[protocol.CLOSED] = "true"
    if state.ttl is not None:
        headers["stream-ttl"] = str(state.ttl)
    if state.expires_at is not None:
        headers["stream-expires-at"] = protocol.format_expires_at(state.expires_at)
    return headers


def holds(state: State, offset: Offset) -> bool:
    """Whether the stream's history holds ``offset`` (``state`` read at its seq)."""
    if offset.seq > state.tail:
        return False
    return offset.seq == 0 or offset.matches(state.tag_at)


def check_offset(state: State, offset: Offset) -> None:
    """``OffsetGone`` for an offset this stream's history does not hold, ``BadOffset`` for
    one at seq 0 with a tag."""
    if not holds(state, offset):
        raise OffsetGone(
            "the offset is not in this stream's history (beyond its tail, or its events "
            "were lost and written again): read it again from -1"
        )
    if offset.seq == 0 and offset.tag != 0:
        raise BadOffset("malformed offset")


def start(offset: ReadOffset, state: State) -> tuple[int, str]:
    """The seq and tag a read starts after."""
    if offset == "now":
        return state.tail, state.tail_tag
    if isinstance(offset, Offset):
        check_offset(state, offset)
        return offset.seq, state.tag_at
    return 0, ""


@dataclass(frozen=True, slots=True)
class Page:
    """What a catch-up or a long-poll with data answers: the body, the offset after it,
    whether it reaches the stream's end, and whether the stream is closed there."""

    state: State
    body: bytes
    next_offset: str
    up_to_date: bool
    closed: bool

    @property
    def headers(self) -> dict[str, str]:
        """The stream's type, where the page leaves the reader, and whether it is up to
        date and the stream closed (``protocol.offset_headers``)."""
        return protocol.offset_headers(
            self.next_offset,
            self.state.content_type,
            up_to_date=self.up_to_date,
            closed=self.closed,
        )


def page(state: State, entries: list[Entry], after: tuple[int, str], *, up_to_date: bool) -> Page:
    """The page of ``entries`` for a reader after ``after`` (seq and tag)."""
    data = [e for e in entries if e.is_data]
    seq, tag = (data[-1].seq, data[-1].tag) if data else after
    closed = up_to_date and (state.closed or bool(entries and not entries[-1].is_data))
    body = protocol.body_of(protocol.mode_of(state.content_type), [e.data for e in data])
    return Page(state, body, protocol.format_offset(seq, tag), up_to_date, closed)


async def catch_up(log: DurableLog, name: str, offset: ReadOffset) -> Page:
    """A page of what follows ``offset`` (renewing the stream's TTL); for ``"now"``, an
    empty page at the tail."""
    count = 0 if offset == "now" else live.PAGE_ENTRIES
    after_seq = offset.seq if isinstance(offset, Offset) else 0
    state, entries = await log.read(name, after_seq, count, live.PAGE_BYTES, touch=True)
    state = await existing(log, name, state)
    after = start(offset, state)
    if offset == "now":
        body = protocol.body_of(protocol.mode_of(state.content_type), [])
        return Page(state, body, protocol.format_offset(*after), True, state.closed)
    up_to_date = not entries or entries[-1].seq >= state.seq
    return page(state, entries, after, up_to_date=up_to_date)


def poll_after(offset: ReadOffset) -> int | None:
    """The seq a long-poll waits for entries after (None: the tail, for ``"now"``)."""
    return None if offset == "now" else (offset.seq if isinstance(offset, Offset) else 0)


def knows(offset: ReadOffset) -> Callable[[State], bool]:
    """Whether a stream's state holds ``offset`` (a long-poll answers at once if not)."""

    def known(state: State) -> bool:
        return not isinstance(offset, Offset) or holds(state, offset)

    return known


class Waited(NamedTuple):
    """A long-poll that got no data: the reader's offset, and whether the stream closed."""

    state: State
    next_offset: str
    closed: bool


async def polled(log: DurableLog, name: str, offset: ReadOffset, got: live.Polled) -> Page | Waited:
    """What a long-poll from ``offset`` answers, given what it got: a page of the data,
    or ``Waited`` for none."""
    state = await existing(log, name, got.state)
    if isinstance(offset, Offset) and not got.entries:
        check_offset(state, offset)
    if any(e.is_data for e in got.entries):
        return page(state, got.entries, (got.at.seq, got.at.tag), up_to_date=True)
    return Waited(state, got.at.offset, got.closed or state.closed)


async def long_poll(  # noqa: PLR0917
    hub: Hub,
    log: DurableLog,
    name: str,
    offset: ReadOffset,
    wait_seconds: float,
    release: Callable[[], None],
) -> Page | Waited:
    """A long-poll from ``offset`` (``live.long_poll``): what it answers. ``release`` is
    called as soon as the wait is over (the reader's slot)."""
    try:
        got = await live.long_poll(
            hub,
            log,
            name=name,
            after=poll_after(offset),
            wait_seconds=wait_seconds,
            known=knows(offset),
        )
    finally:
        release()
    return await polled(log, name, offset, got)


async def sse(
    hub: Hub, log: DurableLog, name: str, offset: ReadOffset, cursor: str | None
) -> tuple[Mode, Callable[[Writer | None], AsyncIterator[bytes]]]:
    """An SSE reader from ``offset`` (``live.sse``), once the stream is found (renewing its
    TTL): how its data is encoded, and the reader, given the writer to the viewer."""
    after_seq = offset.seq if isinstance(offset, Offset) else 0
    state, _ = await log.read(name, after_seq, touch=True)
    state = await existing(log, name, state)
    seq, tag = start(offset, state)
    mode = protocol.mode_of(state.content_type)
    floor = int(protocol.response_cursor(cursor)) if cursor is not None else 0

    def reader(writer: Writer | None) -> AsyncIterator[bytes]:
        return live.sse(
            hub,
            log,
            state=state,
            reader_at=live.Position(seq, tag),
            mode=mode,
            floor=floor,
            name=name,
            writer=writer,
        )

    return mode, reader
