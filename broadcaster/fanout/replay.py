"""Reading a stream's history from the log for viewers: encoded pages, one viewer's own,
or shared by every late joiner of an ended stream (``shared_replay.SharedHistory``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Protocol

from prometheus_client import Counter, Histogram

from broadcaster.core import sse
from broadcaster.core.eventlog import EventLog
from broadcaster.fanout.compact import Folder
from broadcaster.fanout.shared_replay import Page, SharedHistory


class FanoutMetrics(Protocol):
    """What the fan-out counts (the front-end's metrics object has these, among others)."""

    delivered: Counter
    delivery_errors: Counter
    """Labelled by reason: ``viewer`` (a viewer's delivery raised: it was cut),
    ``message`` (a pub/sub message that could not be used as it came)."""
    replayed: Counter
    folded: Counter
    redis_read: Histogram
    waited_turn: Counter
    """New viewers that took a turn at the admission rate (``Hub.admit``)."""

    def appended_at(self, ms: bytes) -> None:
        """A run of live events appended at ``ms`` (Redis's clock) went to its viewers."""


class Replays:
    def __init__(self, log_: EventLog, metrics: FanoutMetrics | None) -> None:
        self.log = log_
        self.metrics = metrics
        self._histories: dict[tuple[str, int, bool], SharedHistory] = {}

    async def pages(
        self, stream_id: str, after: int, until: int | None, *, compact: bool = False
    ) -> AsyncIterator[Page]:
        """Encoded pages read from Redis, each with its last seq and whether it ends;
        ``compact``: consecutive deltas of one part folded (``fanout/compact.py``), the
        last run of a page held back until the next shows where it ends."""
        pages = self.log.read_after(stream_id, after, until)
        folder = Folder() if compact else None
        m = self.metrics
        while True:
            started = time.perf_counter()
            page = await anext(pages, None)
            if page is None:
                break
            if m is not None:
                m.redis_read.observe(time.perf_counter() - started)
                m.replayed.inc(len(page))
            if folder is not None:
                page = folder.feed(page)
                if not page:
                    continue
            yield b"".join(sse.encode(e) for e in page), page[-1].seq, page[-1].terminal
        if folder is not None:
            rest = folder.flush()
            if rest:
                yield b"".join(sse.encode(e) for e in rest), rest[-1].seq, rest[-1].terminal
            if m is not None and folder.folded:
                m.folded.inc(folder.folded)

    async def ended(
        self, stream_id: str, after: int, *, compact: bool = False
    ) -> AsyncIterator[bytes]:
        """An ended stream's history, read once for all the viewers replaying it at once."""
        key = (stream_id, after, compact)
        history = self._histories.get(key)
        if history is None:
            history = SharedHistory(self.pages(stream_id, after, None, compact=compact))
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
