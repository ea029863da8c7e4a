"""The bench's Durable Streams viewer (``--read ds-sse``): each JSON message is one
delivery, checked against how far each ``control`` event's offset moved, whatever the
HTTP chunks and socket reads cut; latency from each message's own ``t``."""

from __future__ import annotations

import time

import pytest

from broadcaster.bench.viewers import DsViewer
from broadcaster.durable import protocol

pytestmark = pytest.mark.anyio

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(body), body)


def run(first: int, last: int, *, t: int = 0, closed: bool = False) -> bytes:
    """What a Durable Streams reader is sent for events first..last of a stream."""
    messages = [b'{"type":"data-bench","t":%d,"i":%d}' % (t, i) for i in range(first, last + 1)]
    data = protocol.sse_data("json", messages)
    offset = protocol.format_offset(last, "1f")
    return data + protocol.sse_control(offset, "42", up_to_date=True, closed=closed)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_messages_are_counted_and_checked_against_the_offsets() -> None:
    v = DsViewer(b"", record_latency=True)
    v.data_received(HEAD + chunk(run(1, 1)))
    assert (v.status, v.frames, v.last_id) == (200, 1, 1)
    assert v.first_event.is_set() and not v.latencies_ns  # the first is not live
    sent = time.time_ns() - 5_000_000
    whole = chunk(run(2, 4, t=sent))
    v.data_received(whole[:40])  # cut inside the data event
    v.data_received(whole[40:-30])  # the data event, not yet its control
    assert (v.frames, v.last_id) == (4, 1)
    v.data_received(whole[-30:])
    assert (v.frames, v.last_id, v.lost, v.duplicated) == (4, 4, 0, 0)
    assert len(v.latencies_ns) == 3 and min(v.latencies_ns) >= 5_000_000
    v.data_received(chunk(b": ping\n\n"))
    assert (v.frames, v.last_id) == (4, 4)
    v.data_received(chunk(run(7, 8)))  # 5 and 6 never came
    assert (v.frames, v.last_id, v.lost, v.duplicated) == (6, 8, 2, 0)
    again = run(8, 8).split(b"event: control")[0]  # 8 once more, then 9 and the close
    v.data_received(chunk(again + run(9, 9, closed=True)))
    assert (v.frames, v.last_id, v.lost, v.duplicated) == (8, 9, 2, 1)
    assert v.done
