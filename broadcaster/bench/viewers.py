"""The viewer side of ``bench``: many SSE connections per process, each as cheap as can be.

A load generator that costs as much per event as the server it measures measures itself.
So a viewer is a bare ``asyncio.Protocol`` (no streams, no per-frame Python): each read
is scanned with two compiled regexes in C. The ids of a read are checked in O(1) when
they are the expected run ``last+1 .. last+n`` (the normal case) and one by one only
otherwise. The publish time is parsed only on the viewers chosen to sample latency. HTTP
chunked framing is not decoded: the servers write whole SSE frames per chunk, so the chunk
size lines fall between frames, where the ``^id:`` scan ignores them.

The viewers of a bench run are spread over several processes (``run_group``, started by
``run.py`` with ``multiprocessing``), and over the loopback source addresses
127.0.0.1-127.0.0.8 when the target is 127.0.0.1, so 10,000 connections neither share
one ephemeral port range nor one Python interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import cast
from urllib.parse import parse_qs, urlsplit

from broadcaster.core.rlimit import raise_nofile_limit

_ID = re.compile(rb"^id: (\d+)", re.MULTILINE)
_T = re.compile(rb'"t":(\d+)')
_DONE = b"data: [DONE]"
LOOPBACK_SOURCES = 8
READS = ("sse", "ds-sse", "mux")
"""How a viewer reads its stream: the project's SSE route, the stream as a Durable Stream
with ``live=sse`` (``DsViewer``), or on a connection following many streams
(``GET /v1/events``, ``MuxViewer``)."""
_NEXT = b'"streamNextOffset":"'
_MESSAGE = b'{"type":"'
_CLOSED = b'"streamClosed":true'


class BenchError(RuntimeError):
    pass


def own_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Viewer(asyncio.Protocol):
    """One SSE connection: counts frames, checks ids, optionally collects latencies."""

    def __init__(self, request: bytes, record_latency: bool) -> None:
        self._request = request
        self.record_latency = record_latency
        self.transport: asyncio.Transport | None = None
        self._head = b""
        self._buf = b""
        self.status = 0
        self.last_id = 0
        self.frames = 0
        self.lost = 0
        self.duplicated = 0
        self.done = False
        self.latencies_ns: list[int] = []
        self.last_rx_ns = 0
        self.connect_ns = 0
        """When it began to connect; with ``first_ns``, how long its first event took."""
        self.first_ns = 0
        self.first_event = asyncio.Event()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if not self.status:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self._head.split(b" ", 2)[1])
            data, self._head = self._head[end + 4 :], b""
            if self.status != 200:
                self._close()
                return
        buf = self._buf + data if self._buf else data
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._buf = buf
            return
        block, self._buf = buf[: end + 2], buf[end + 2 :]
        self._block(block)

    def _block(self, block: bytes) -> None:
        # Frames are "id: N\nevent: ...\ndata: <one line>\n\n": "\nid: " starts every
        # frame but one at the start of the block, and appears nowhere else.
        n = block.count(b"\nid: ") + block.startswith(b"id: ")
        if n:
            now = time.time_ns()
            first_m = _ID.search(block)
            assert first_m is not None
            first = int(first_m.group(1))
            last_m = _ID.match(block, block.rfind(b"\nid: ") + 1) if n > 1 else first_m
            last = int(last_m.group(1)) if last_m is not None else -1
            self.frames += n
            self.last_rx_ns = now
            if first == self.last_id + 1 and last - first + 1 == n:
                self.last_id = last
            else:
                self._check_each(_ID.findall(block))
            if first == 1:
                self.first_ns = now
                self.first_event.set()
            elif self.record_latency:
                self.latencies_ns.extend(now - int(t) for t in _T.findall(block))
        if _DONE in block:
            self.done = True
            self._close()

    def _check_each(self, ids: list[bytes]) -> None:
        for raw in ids:
            eid = int(raw)
            if eid == self.last_id + 1:
                self.last_id = eid
            elif eid <= self.last_id:
                self.duplicated += 1
            else:
                self.lost += eid - self.last_id - 1
                self.last_id = eid

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class DsViewer(Viewer):
    """A Durable Streams reader over ``live=sse`` of a stream of events (read as an
    ``application/json`` Durable Stream): ``event: data`` events carry JSON arrays of the
    events' data, each followed by an ``event: control`` whose ``streamNextOffset`` is
    ``<seq>_<tag>``. Each message is one delivery; they are counted in C (each event's
    JSON starts ``{"type":"``) and checked, per control event, against how far its offset
    moved: more messages than that are duplicates, fewer were lost."""

    def __init__(self, request: bytes, record_latency: bool) -> None:
        super().__init__(request, record_latency)
        self._unchecked = 0
        """Messages received since the last control event."""

    def _block(self, block: bytes) -> None:
        n = block.count(_MESSAGE)
        if n:
            self.frames += n
            self._unchecked += n
            self.last_rx_ns = time.time_ns()
            if self.record_latency and self.last_id:
                now = self.last_rx_ns
                self.latencies_ns.extend(now - int(t) for t in _T.findall(block))
        at = block.rfind(_NEXT)
        if at >= 0:
            start = at + len(_NEXT)
            seq = int(block[start : block.index(b"_", start)])
            moved, got = seq - self.last_id, self._unchecked
            if got > moved:
                self.duplicated += got - max(moved, 0)
            elif got < moved:
                self.lost += moved - got
            self._unchecked = 0
            if seq > self.last_id:
                if not self.last_id:
                    self.first_ns = self.last_rx_ns or time.time_ns()
                    self.first_event.set()
                self.last_id = seq
        if _CLOSED in block:
            self.done = True
            self._close()


class MuxViewer(Viewer):
    """A connection following several streams (``GET /v1/events?stream=…``), measured on
    the first it names: the others are a dashboard's quiet streams, whose only frames are
    their first events, replayed at connect. A frame's ``data:`` is ``{"stream": …,
    "seq": …, "event": …}``; the measured stream's seqs are checked as ``Viewer`` checks
    ids, and only its frames count as deliveries."""

    def __init__(self, request: bytes, record_latency: bool, sid: str, follow: int) -> None:
        super().__init__(request, record_latency)
        self._mine = re.compile(b'"stream":"' + re.escape(sid.encode()) + rb'","seq":(\d+)')
        self._finish = b'event: finish\ndata: {"stream":"' + sid.encode() + b'"'
        self._starting = follow
        """First events still to come: the viewer is ready once every stream it follows
        has shown its own (the dashboard is whole)."""

    def _block(self, block: bytes) -> None:
        if self._starting:
            self._starting -= block.count(b'","seq":1,"event":')
            if self._starting <= 0:
                self._starting = 0
                self.first_ns = time.time_ns()
                self.first_event.set()
        seqs = self._mine.findall(block)
        if seqs:
            now = time.time_ns()
            first, last, n = int(seqs[0]), int(seqs[-1]), len(seqs)
            self.frames += n
            self.last_rx_ns = now
            if first == self.last_id + 1 and last - first + 1 == n:
                self.last_id = last
            else:
                self._check_each(seqs)
            if first > 1 and self.record_latency:
                self.latencies_ns.extend(now - int(t) for t in _T.findall(block))
        if self._finish in block:  # the connection stays open: it follows other streams
            self.done = True
            if not self.closed.done():
                self.closed.set_result(None)


def request_bytes(host: str, port: int, path: str, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n{auth}\r\n"
    ).encode()


@dataclass
class GroupSpec:
    """The viewers one process opens: ``(host, port, path)`` each."""

    targets: list[tuple[str, int, str]]
    token: str | None = None
    latency_every: int = 1
    """Viewer i samples latency when i % latency_every == 0 (0: none)."""
    wait_first: bool = True
    """Wait for seq 1 on every viewer before reporting ready (live runs, not replays)."""
    timeout: float = 60.0
    """Seconds, after ready, for every viewer to reach ``[DONE]``; those still open then
    are closed and reported as timed out (a server slower than the offered load)."""
    first_index: int = 0
    """The global index of the first viewer (spreads source addresses across groups)."""
    first_wait: float = 30.0
    """Seconds a viewer may take to get its first event before the run fails."""
    read: str = "sse"
    """How the viewers read (``READS``): ``ds-sse`` makes them ``DsViewer``s."""


async def _open(
    loop: asyncio.AbstractEventLoop, host: str, port: int, v: Viewer, index: int
) -> None:
    local = None
    if host == "127.0.0.1":
        local = (f"127.0.0.{1 + index % LOOPBACK_SOURCES}", 0)
    await loop.create_connection(lambda: v, host, port, local_addr=local)


def _viewer(read: str, request: bytes, record_latency: bool, path: str) -> Viewer:
    if read == "ds-sse":
        return DsViewer(request, record_latency)
    if read == "mux":  # measured on the first stream the path names
        streams = parse_qs(urlsplit(path).query)["stream"]
        return MuxViewer(request, record_latency, streams[0], len(streams))
    return Viewer(request, record_latency)


async def _group(spec: GroupSpec, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    viewers = [
        _viewer(
            spec.read,
            request_bytes(h, p, path, spec.token),
            spec.latency_every > 0 and (spec.first_index + i) % spec.latency_every == 0,
            path,
        )
        for i, (h, p, path) in enumerate(spec.targets)
    ]
    sem = asyncio.Semaphore(200)  # opening many sockets at once overflows listen backlogs

    async def open_one(i: int, v: Viewer) -> None:
        host, port, path = spec.targets[i]
        async with sem:
            v.connect_ns = time.time_ns()
            await _open(loop, host, port, v, spec.first_index + i)
            if not spec.wait_first:
                return
            first = asyncio.ensure_future(v.first_event.wait())
            done, _ = await asyncio.wait(
                {first, v.closed}, timeout=spec.first_wait, return_when=asyncio.FIRST_COMPLETED
            )
            if first not in done:
                first.cancel()
                why = (
                    f"HTTP {v.status}"
                    if v.status not in (0, 200)
                    else f"no first event in {spec.first_wait:g} s"
                )
                raise BenchError(f"viewer {path}: {why}")

    t_open = time.perf_counter()
    started_ns = time.time_ns()
    await asyncio.gather(*(open_one(i, v) for i, v in enumerate(viewers)))
    # Modules and viewers live to the end: keep full collections (pauses that would show
    # as latency the server did not cause) from scanning them.
    gc.collect()
    gc.freeze()
    conn.send(("ready", time.perf_counter() - t_open, own_cpu_seconds(), started_ns))
    # asyncio.wait, not a timeout around gather: that would cancel the futures it reads.
    await asyncio.wait([v.closed for v in viewers], timeout=spec.timeout)
    timed_out = [not v.closed.done() for v in viewers]
    conn.send(("done", _report(viewers, timed_out)))
    # Connections still open (a dashboard's: its other streams go on) close once the
    # parent has read its counters: closing them is no cost of the window's events.
    with contextlib.suppress(EOFError, OSError):
        await asyncio.to_thread(conn.recv)
    for v in viewers:
        v._close()


def _report(viewers: list[Viewer], timed_out: list[bool]) -> dict[str, object]:
    """What a group's viewers saw, for the parent."""
    return {
        "cpu": own_cpu_seconds(),
        "viewers": [
            (v.status, v.frames, v.last_id, v.lost, v.duplicated, v.done, v.last_rx_ns, t)
            for v, t in zip(viewers, timed_out, strict=True)
        ],
        "latencies_ns": [x for v in viewers for x in v.latencies_ns],
        "first_event_ns": [v.first_ns - v.connect_ns for v in viewers if v.first_ns],
        "finished_ns": time.time_ns(),
    }


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it is, with uvicorn[standard]): a cheaper load generator."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_group(spec: GroupSpec, conn: Connection) -> None:
    """A child process's body: open the viewers, report ready, then report what they saw."""
    raise_nofile_limit()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_group(spec, conn))
    except (BenchError, OSError) as exc:
        conn.send(("error", repr(exc)))
    finally:
        conn.close()
