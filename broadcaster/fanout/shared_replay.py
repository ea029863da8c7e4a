"""One read of an ended stream's history, shared by the viewers replaying it together.

An ended stream cannot change, so a burst of late joiners reads and encodes its pages
once per starting seq, not once per viewer; the pages live while anyone iterates them
(at most one stream's history each). Live streams are not shared: the replay/live seam
relies on each viewer reading after it subscribed. A page read is a task owned by the
history, awaited shielded, so a viewer leaving does not cancel the others' read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

Page = tuple[bytes, int, bool]  # encoded frames, last seq, ends the stream


class SharedHistory:
    """The pages of one ended stream from one seq, read on demand, in order, once."""

    def __init__(self, source: AsyncIterator[Page]) -> None:
        self._source = source
        self._pages: list[Page] = []
        self._done = False
        self._reading: asyncio.Task[Page | None] | None = None
        self.users = 0

    async def pages(self) -> AsyncIterator[Page]:
        i = 0
        while True:
            while i >= len(self._pages):
                if self._done:
                    return
                if self._reading is None:
                    self._reading = asyncio.ensure_future(anext(self._source, None))
                reading = self._reading
                page = await asyncio.shield(reading)
                if self._reading is reading:
                    self._reading = None
                    if page is None:
                        self._done = True
                    else:
                        self._pages.append(page)
            yield self._pages[i]
            i += 1

    async def aclose(self) -> None:
        """Stop reading (the last viewer left): the read in flight is cancelled and awaited."""
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reading
            self._reading = None
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            await aclose()
