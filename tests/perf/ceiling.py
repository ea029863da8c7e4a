"""The ceiling of the comparison (tests/perf/compare.py): the least a server can do to
copy the same frames to the same sockets. No HTTP framework (a fixed response head, the
request read only for its path), no Redis, no parsing of events, the same event loop
(uvloop) as the project. The bench publishes through ``RelaySink`` over one TCP
connection: ``<stream id> <length>\\n<pre-encoded frames>``; the server keeps each
stream's frames (for the viewer that joins late, as the project's replay) and writes what
one read brought to every viewer of the stream in one ``write``.

usage: python -m tests.perf.ceiling HTTP_PORT RELAY_PORT [KEEPALIVE_SECONDS] [--reuse-port]

With ``--reuse-port``, several of these processes share ``HTTP_PORT`` (the kernel spreads
the viewers over them, as over the project's front-ends with ``BROADCASTER_REUSE_PORT``),
each with a relay port of its own; ``RelaySink`` sends every append to all of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Sequence
from typing import Any

from broadcaster.core import sse
from broadcaster.core.events import Event, dump_batch
from broadcaster.core.process import raise_nofile_limit

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"connection: close\r\n\r\nretry: 1000\n\n"
)


class Streams:
    def __init__(self) -> None:
        self.history: dict[bytes, list[bytes]] = {}
        self.viewers: dict[bytes, set[asyncio.Transport]] = {}

    def publish(self, sid: bytes, frames: bytes) -> None:
        self.history.setdefault(sid, []).append(frames)
        for t in self.viewers.get(sid, ()):
            t.write(frames)

    def ping(self) -> None:
        for viewers in self.viewers.values():
            for t in viewers:
                t.write(sse.PING)


class Viewer(asyncio.Protocol):
    def __init__(self, streams: Streams) -> None:
        self.streams = streams
        self.head = b""
        self.sid: bytes | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.sid is not None or self.transport is None:
            return
        self.head += data
        if b"\r\n\r\n" not in self.head:
            return
        path = self.head.split(b" ", 2)[1]  # /v1/streams/<id>/events
        self.sid = path.split(b"/")[3]
        self.transport.write(HEAD + b"".join(self.streams.history.get(self.sid, ())))
        self.streams.viewers.setdefault(self.sid, set()).add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sid is not None and self.transport is not None:
            self.streams.viewers.get(self.sid, set()).discard(self.transport)


class Relay(asyncio.Protocol):
    def __init__(self, streams: Streams) -> None:
        self.streams = streams
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        batches: dict[bytes, list[bytes]] = {}
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                break
            sid, size = self.buf[:nl].split(b" ")
            end = nl + 1 + int(size)
            if len(self.buf) < end:
                break
            batches.setdefault(sid, []).append(self.buf[nl + 1 : end])
            self.buf = self.buf[end:]
        for sid, frames in batches.items():
            self.streams.publish(sid, b"".join(frames))


class RelaySink:
    """The bench's publisher for the ceiling: frames encoded as the project encodes them,
    history tags included (core/eventlog.py's chain: sha1 of the previous tag, type and data), sent
    to every ceiling process's relay port (``ports``)."""

    def __init__(self, host: str, *ports: int) -> None:
        self.host, self.ports = host, ports
        self.seq: dict[str, int] = {}
        self.tag: dict[str, str] = {}
        self.writers: list[asyncio.StreamWriter] = []

    async def publish(
        self, stream_id: str, events: dict[str, Any] | Sequence[dict[str, Any]]
    ) -> int:
        if not self.writers:
            for port in self.ports:
                _, writer = await asyncio.open_connection(self.host, port)
                self.writers.append(writer)
        batch = [events] if isinstance(events, dict) else list(events)
        seq = self.seq.get(stream_id, 0)
        tag = self.tag.get(stream_id, "")
        frames = []
        for etype, data in dump_batch(batch):
            seq += 1
            tag = hashlib.sha1(f"{tag}{etype} ".encode() + data).hexdigest()[:8]
            frames.append(sse.encode(Event(seq, etype, data, tag)))
        self.seq[stream_id] = seq
        self.tag[stream_id] = tag
        body = b"".join(frames)
        message = b"%s %d\n%s" % (stream_id.encode(), len(body), body)
        for writer in self.writers:
            writer.write(message)
        for writer in self.writers:
            await writer.drain()
        return seq

    async def aclose(self) -> None:
        for writer in self.writers:
            writer.close()
        for writer in self.writers:
            await writer.wait_closed()
        self.writers = []


async def serve(http_port: int, relay_port: int, keepalive: float, reuse_port: bool) -> None:
    loop = asyncio.get_running_loop()
    streams = Streams()
    http = await loop.create_server(
        lambda: Viewer(streams), "127.0.0.1", http_port, backlog=4096, reuse_port=reuse_port
    )
    relay = await loop.create_server(lambda: Relay(streams), "127.0.0.1", relay_port)
    async with http, relay:
        while True:
            await asyncio.sleep(keepalive)
            streams.ping()


def main() -> None:
    import uvloop

    args = [a for a in sys.argv[1:] if a != "--reuse-port"]
    keepalive = float(args[2]) if len(args) > 2 else 15.0
    raise_nofile_limit()
    uvloop.run(serve(int(args[0]), int(args[1]), keepalive, "--reuse-port" in sys.argv))


if __name__ == "__main__":
    main()
