"""The AG-UI publish path's state: each stream's ``inbound.ChunkMapper`` at the seq it
has mapped up to, kept by the front-end so a producer's next batch needs no read.

The state is folded from the stream's own chunks, so nothing is stored beside the log: a
front-end that has not seen the stream's last seq (another front-end appended, or it
dropped the stream) folds the log again. A batch is appended with the seq its state was
folded at as the expected last seq, so two producers racing on one stream never append
from a stale state (``Producers.mapper_at`` is called again; the route retries).
"""

from __future__ import annotations

from collections import OrderedDict

from broadcaster.agui.inbound import ChunkMapper
from broadcaster.core.eventlog import EventLog

KEEP_STREAMS = 256
"""Mappers a front-end keeps (the most recently used)."""


class Producers:
    def __init__(self, limit: int = KEEP_STREAMS) -> None:
        self.limit = limit
        self.streams: OrderedDict[str, tuple[int, ChunkMapper]] = OrderedDict()

    async def mapper_at(self, event_log: EventLog, stream_id: str, seq: int) -> ChunkMapper:
        """A mapper whose state is the stream's up to ``seq`` (its last): a copy of the kept
        one, else folded from the log. The caller's to change: ``keep`` it once appended."""
        found = self.streams.get(stream_id)
        if found is not None and found[0] == seq:
            self.streams.move_to_end(stream_id)
            return found[1].copy()
        mapper = ChunkMapper()
        if seq:
            async for page in event_log.read_after(stream_id, 0, seq):
                for event in page:
                    mapper.observe(event.json())
        return mapper

    def keep(self, stream_id: str, seq: int, mapper: ChunkMapper) -> None:
        self.streams[stream_id] = (seq, mapper)
        self.streams.move_to_end(stream_id)
        if len(self.streams) > self.limit:
            self.streams.popitem(last=False)
