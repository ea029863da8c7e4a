"""Parts of the hub's tests that more than one module uses: a made stream's info
(``info_of``) and a viewer's socket that records what the hub writes to it (``Wire``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from broadcaster.core.eventlog import EventLog, StreamInfo
from tests.support.procs import parse_sse


async def info_of(log: EventLog, sid: str) -> StreamInfo:
    """A stream the test made: its info, which must exist."""
    info = await log.info(sid)
    assert info is not None, sid
    return info


class Wire:
    """A viewer's socket: a writer that accepts, or refuses every ``refuse_every``-th."""

    def __init__(self, refuse_every: int = 0) -> None:
        self.data: list[bytes] = []
        self.direct = 0
        self.refused = 0
        self._calls = 0
        self._refuse_every = refuse_every

    def write(self, data: bytes) -> bool:
        self._calls += 1
        if self._refuse_every and self._calls % self._refuse_every == 0:
            self.refused += 1
            return False
        self.direct += 1
        self.data.append(data)
        return True

    async def drain(self, chunks: AsyncIterator[bytes]) -> None:
        async with asyncio.timeout(30):
            async for chunk in chunks:
                self.data.append(chunk)
                await asyncio.sleep(0)  # a socket that takes a moment, so frames queue

    def ids(self) -> list[int]:
        events, _, _ = parse_sse(b"".join(self.data))
        return [int(e.id.split(".")[0]) for e in events if e.id]
