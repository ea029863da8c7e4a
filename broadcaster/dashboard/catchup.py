"""A dashboard connection's catch-up (``feed.Connection``'s, through ``CatchUp``): the
streams it starts to follow, read together, and each one's history after the
connection's position, in pages, compacted (consecutive deltas of a part folded), as
frames, with a base of the resume point written between streams so that ids stay short.
Nothing here runs on the fan-out's delivery path (``feed.Follow.deliver``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from broadcaster.core.eventlog import FIRST_PAGE, EventLog, StreamInfo
from broadcaster.core.events import Event
from broadcaster.dashboard.cursor import REBASE, Cursor, position_of
from broadcaster.fanout.compact import Folder
from broadcaster.fanout.subscription import Subscription

if TYPE_CHECKING:
    from broadcaster.dashboard.feed import Follow

ADD_AT_ONCE = 100
"""Streams whose states, subscriptions and first pages a connection reads together."""


class CatchUp:
    """The catch-up of a ``feed.Connection`` (its base class: the methods are its own, and
    the fan-out's hooks, on the connection itself, are found as before)."""

    if not TYPE_CHECKING:  # mypy would hold the connection's fields to these empty slots
        __slots__ = ()
    else:  # what the connection holds and does (feed.Connection)
        log: EventLog
        cursor: Cursor
        streams: list[str]
        limit: int
        follows: dict[str, tuple[Follow, AbstractAsyncContextManager[Subscription]]]
        done: set[str]
        waiting: set[str]
        over_limit_told: bool
        _rebasing: asyncio.Task[None] | None
        _terminal: set[str]

        def rebase(self) -> None: ...

        async def _subscribe(self, stream_id: str, info: StreamInfo, seq: int) -> None: ...

        async def _drop(self, stream_id: str) -> None: ...

        def _frames(self, stream_id: str, events: Iterable[Event]) -> bytes:
            raise NotImplementedError

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
        """While more than ``past`` positions moved since the base, write one (or wait for
        the one being written), so that the frames after it name it. Between replays
        (``REBASE``): else each replay's id joined every position moved so far, 871 KB of
        ids for a dashboard of 1,000 streams (171 KB so, a base per 16 streams, ~1 ms
        apiece). Once caught up (1): else up to ``REBASE`` positions were joined in every
        live id until a 17th moved. A failed write leaves the ids longer."""
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


def _limit_frame(limit: int) -> bytes:
    data = json.dumps({"type": "streams-limit", "data": {"limit": limit}})
    return b"event: streams-limit\ndata: %s\n\n" % data.encode()
