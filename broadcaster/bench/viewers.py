"""The viewer side of ``bench``: many SSE connections per process, each as cheap as can be.

A load generator that costs as much per event as the server it measures measures itself,
so a viewer is a bare ``asyncio.Protocol``: each read is scanned by compiled regexes, a
run of ids is checked in O(1) when it is the expected ``last+1 .. last+n``, and only the
sampling viewers parse publish times. Chunked framing is not decoded: servers write
whole SSE frames per chunk, so the size lines fall between frames. Viewers are spread
over processes (``groups.py``) and loopback source addresses, so many connections share
neither one ephemeral port range nor one interpreter. A dropped viewer comes back as
an ``EventSource`` does, with ``Last-Event-ID``, and must then get every later event
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import math
import re
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from broadcaster.core.process import raise_nofile_limit

_ID = re.compile(rb"^id: (\d+)(?:\.(\w+))?", re.MULTILINE)
_IDS = re.compile(rb"^id: (\d+)", re.MULTILINE)
_T = re.compile(rb'"t":(\d+)')
_RETRY = re.compile(rb"^retry: (\d+)", re.MULTILINE)
_RETRY_AFTER = re.compile(rb"(?im)^retry-after: *(\d+)")
_DONE = b"data: [DONE]"
LOOPBACK_SOURCES = 8
"""Source addresses 127.0.0.1-127.0.0.8 at least (``GroupSpec.sources``)."""
PER_SOURCE = 5_000
"""Viewers per loopback source address at most: each address has its own 28,232
ephemeral ports, which the viewers share with their reconnections and with the
connections a previous run left in TIME_WAIT."""
PROGRESS_EVERY = 0.5
"""Seconds between two progress reports of a viewer process."""
RECONNECT_FLOOR = 0.1
"""Least seconds before a viewer reconnects (a refused connect, a response without
``retry:``)."""
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

    mark = 0
    """When a front-end was killed (``time.time_ns()``; 0: none yet): each viewer records
    when it first gets an event published after that (``mark_ns``). Set for the process
    by ``_listen``."""

    def __init__(
        self, request: bytes, record_latency: bool, reconnect: Reconnect | None = None
    ) -> None:
        self._request = request
        self.record_latency = record_latency
        self._reconnect = reconnect
        """How to come back after a drop (None: a drop ends the viewer)."""
        self.transport: asyncio.Transport | None = None
        self._head = b""
        self._buf = b""
        self.status = 0
        self.last_id = 0
        self._last_m: re.Match[bytes] | None = None
        """The last ``id:`` line received: ``<seq>.<tag>``, the tag naming the history."""
        self.frames = 0
        self.lost = 0
        self.duplicated = 0
        self.done = False
        self.latencies_ns: list[int] = []
        self.latency_at_ns: list[int] = []
        """When each of ``latencies_ns`` was measured."""
        self.last_rx_ns = 0
        self.connect_ns = 0
        """When it began to connect; with ``first_ns``, how long its first event took."""
        self.first_ns = 0
        self.first_event = asyncio.Event()
        self.closed = asyncio.get_running_loop().create_future()
        self.connected = False
        """A response of 200 is open."""
        self.cuts = 0
        """Open responses (200) lost before ``[DONE]``: a front-end died."""
        self.retries = 0
        """Connections tried again: after a cut, a 503 or a failed connect."""
        self.refused = 0
        """Responses 503 (the front-end admitting as fast as it may, or full)."""
        self.away = False
        """Dropped, and not back with a response of 200 yet."""
        self.resumed_ns = 0
        """When its resumed request was answered 200, after the last cut."""
        self.mark_ns = 0
        """When it first got an event published after ``Viewer.mark``."""
        self.mark_pub_ns = 0
        """When that event was published."""
        self.back = Back()
        """Where the seconds after its first cut went (``Back``)."""
        self._retry = 0.0
        """The latest ``retry:`` (seconds), or a 503's ``Retry-After``."""
        self._ending = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self.cuts and not self.resumed_ns:
            self.back.made_ns = time.time_ns()
        if self.last_id:
            resume = b"Last-Event-ID: %b\r\n\r\n" % self.resume()
            self.transport.write(self._request[:-2] + resume)
        else:
            self.transport.write(self._request)

    def resume(self) -> bytes:
        """The ``Last-Event-ID`` to resume from: the last id received, whole."""
        m = self._last_m
        if m is not None and int(m.group(1)) == self.last_id and m.group(2):
            return b"%d.%b" % (self.last_id, m.group(2))
        return b"%d" % self.last_id

    def connection_lost(self, exc: Exception | None) -> None:
        if self.connected:
            self.connected = False
            if not self.done and not self._ending:
                self.cuts += 1
                self.resumed_ns = 0
                if not self.back.cut_ns:
                    self.back.cut_ns = time.time_ns()
        self.transport = None
        if self.closed.done():
            return
        if self.done or self._ending or self._reconnect is None:
            self.closed.set_result(None)
            return
        self._dropped()

    def _dropped(self) -> None:
        """Come back after ``retry:`` (at least ``RECONNECT_FLOOR``), as an EventSource."""
        assert self._reconnect is not None
        self.retries += 1
        if not self.away:
            self.away = True
            self._reconnect.away += 1
        self._head = self._buf = b""
        self.status = 0
        delay = max(RECONNECT_FLOOR, self._retry)
        self._retry = 0.0
        asyncio.get_running_loop().call_later(delay, self._reconnect.again, self)

    def data_received(self, data: bytes) -> None:
        if not self.status:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self._head.split(b" ", 2)[1])
            head, data, self._head = self._head[:end], self._head[end + 4 :], b""
            if self.status == 204:  # it had seen the end: nothing is left to send
                self.done = True
            if self.status != 200:
                if self.status == 503:
                    self.refused += 1
                    m = _RETRY_AFTER.search(head)
                    self._retry = float(m.group(1)) if m else 1.0
                self._close()
                return
            self.connected = True
            if self.cuts and not self.resumed_ns:
                self.resumed_ns = time.time_ns()
            if self.away and self._reconnect is not None:
                self.away = False
                self._reconnect.away -= 1
        if self._reconnect is not None and b"retry: " in data:
            m = _RETRY.search(data)
            if m:
                self._retry = int(m.group(1)) / 1000
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
                self._check_each(_IDS.findall(block))
            self._last_m = last_m  # its id's tag is read only to reconnect (``resume``)
            if self.resumed_ns and not self.back.next_ns:
                self.back.next_event(now, block)
            if Viewer.mark and not self.mark_ns:
                self._after_mark(now, block)
            if first == 1:
                self.first_ns = now
                self.first_event.set()
            elif self.record_latency:
                ts = _T.findall(block)
                self.latencies_ns.extend(now - int(t) for t in ts)
                self.latency_at_ns.extend([now] * len(ts))
        if block.find(_DONE, len(block) - 64) >= 0:  # the last frame, or near it
            self.done = True
            self._close()

    def _after_mark(self, now: int, block: bytes) -> None:
        """Whether ``block`` has an event published after ``Viewer.mark``: then ``mark_ns``
        is ``now``, and ``mark_pub_ns`` when that event was published (read only until a
        viewer has one)."""
        after = [t for t in map(int, _T.findall(block)) if t > Viewer.mark]
        if after:
            self.mark_ns, self.mark_pub_ns = now, after[0]

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

    def end(self) -> None:
        """Close for good: no reconnection."""
        self._ending = True
        self._close()
        if not self.closed.done() and self.transport is None:
            self.closed.set_result(None)


@dataclass
class Back:
    """A viewer's way back after its first cut (``time.time_ns()`` each, 0: not yet): the
    cut, its first reconnection tried (after the ``retry:`` the server advised), the
    connection of the request that was answered 200 made, and its next event received
    (``next_pub_ns``: when that event was published)."""

    # the order of the fields is the order in ``_report``'s tuples (``figures._way_back``)

    cut_ns: int = 0
    dial_ns: int = 0
    made_ns: int = 0
    next_ns: int = 0
    next_pub_ns: int = 0
    attempt_ns: int = 0
    """When its latest try was begun (after a 503's ``Retry-After``, a refused connect)."""

    def attempt(self) -> None:
        if self.cut_ns and not self.next_ns:
            self.attempt_ns = time.time_ns()

    def next_event(self, now: int, block: bytes) -> None:
        self.next_ns = now
        m = _T.search(block)
        self.next_pub_ns = int(m.group(1)) if m else 0


class Reconnect:
    """Brings dropped viewers back, with ``Last-Event-ID``, and counts those away."""

    def __init__(self, open_: Callable[[Viewer], Any], deadline: float) -> None:
        self._open = open_
        self.deadline = deadline
        """``time.monotonic()`` after which a dropped viewer gives up."""
        self.away = 0
        """Viewers dropped and not yet back (with a response of 200)."""

    def again(self, v: Viewer) -> None:
        if v.closed.done() or v._ending:
            return
        if v.cuts and not v.back.dial_ns:
            v.back.dial_ns = time.time_ns()
        if time.monotonic() > self.deadline:
            v.closed.set_result(None)
            return
        task = asyncio.ensure_future(self._open(v))
        task.add_done_callback(lambda t: self._connected(t, v))

    def _connected(self, task: asyncio.Future[Any], v: Viewer) -> None:
        if not task.cancelled() and task.exception() is not None:
            v._dropped()  # refused or reset while connecting: again, later


class DsViewer(Viewer):
    """A Durable Streams reader over ``live=sse`` of a stream of events: each ``event: data``
    message is one delivery, counted in C and checked against how far the next control
    event's ``streamNextOffset`` moved (more are duplicates, fewer were lost)."""

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
                ts = _T.findall(block)
                self.latencies_ns.extend(now - int(t) for t in ts)
                self.latency_at_ns.extend([now] * len(ts))
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
            if Viewer.mark and not self.mark_ns:
                self._after_mark(now, block)
            if first > 1 and self.record_latency:
                ts = _T.findall(block)
                self.latencies_ns.extend(now - int(t) for t in ts)
                self.latency_at_ns.extend([now] * len(ts))
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
    sources: int = LOOPBACK_SOURCES
    """Loopback source addresses to spread over (``sources_for``)."""
    reconnect: bool = True
    """A viewer dropped before ``[DONE]`` comes back with ``Last-Event-ID`` (SSE only)."""
    wait_window: bool = False
    """``timeout`` runs from ``groups.py``'s ``("window",)`` (when it starts publishing),
    not from ready: the processes of 100,000 viewers are ready minutes apart."""


def sources_for(viewers: int) -> int:
    """Loopback source addresses for ``viewers`` connections: at most ``PER_SOURCE`` on
    each, and never fewer than ``LOOPBACK_SOURCES`` (127.0.0.1-127.0.0.254 at most)."""
    return min(254, max(LOOPBACK_SOURCES, math.ceil(viewers / PER_SOURCE)))


async def _open(target: tuple[str, int, str], v: Viewer, index: int, sources: int) -> None:
    host, port, _ = target
    local = None
    if host == "127.0.0.1":
        local = (f"127.0.0.{1 + index % sources}", 0)
    await asyncio.get_running_loop().create_connection(lambda: v, host, port, local_addr=local)


def _viewers(spec: GroupSpec, reconnect: Reconnect | None) -> list[Viewer]:
    def samples(i: int) -> bool:
        return spec.latency_every > 0 and (spec.first_index + i) % spec.latency_every == 0

    def one(i: int, host: str, port: int, path: str) -> Viewer:
        request = request_bytes(host, port, path, spec.token)
        if spec.read == "ds-sse":
            return DsViewer(request, samples(i))
        if spec.read == "mux":  # measured on the first stream the path names
            streams = parse_qs(urlsplit(path).query)["stream"]
            return MuxViewer(request, samples(i), streams[0], len(streams))
        return Viewer(request, samples(i), reconnect)

    return [one(i, h, p, path) for i, (h, p, path) in enumerate(spec.targets)]


async def _report_progress(conn: Connection, viewers: list[Viewer], back: Reconnect | None) -> None:
    """``("progress", now ns, viewers with a response open, frames received, viewers
    away)`` to ``groups.py``, every ``PROGRESS_EVERY`` seconds."""
    while True:
        conn.send(
            (
                "progress",
                time.time_ns(),
                sum(v.connected for v in viewers),
                sum(v.frames for v in viewers),
                back.away if back is not None else 0,
            )
        )
        await asyncio.sleep(PROGRESS_EVERY)


def _listen(
    ctrl: Connection | None, window: Callable[[], None], release: asyncio.Future[None]
) -> None:
    """Take ``("window",)`` from ``groups.py`` (the window began: ``window()``), ``("mark",
    ns)`` (each viewer records when it first gets an event published after ``ns``) and
    ``("close",)`` (the counters are read: ``release``)."""
    if ctrl is None:
        release.set_result(None)
        return
    loop = asyncio.get_running_loop()

    def read() -> None:
        try:
            msg = ctrl.recv()
        except (EOFError, OSError):
            loop.remove_reader(ctrl.fileno())
            window()  # nobody will say: the deadline runs from now
            _settle(release)
            return
        if msg[0] == "window":
            window()
        elif msg[0] == "mark":
            Viewer.mark = int(msg[1])
        elif msg[0] == "close":
            _settle(release)

    loop.add_reader(ctrl.fileno(), read)


async def _open_all(
    spec: GroupSpec,
    viewers: list[Viewer],
    connect: Callable[[int, Viewer], Awaitable[None]],
    sem: asyncio.Semaphore,
    conn: Connection,
) -> None:
    """Open every viewer (``sem`` at once; with ``wait_first``, each until its first
    event), then tell the parent they are ready."""

    async def open_one(i: int, v: Viewer) -> None:
        async with sem:
            v.connect_ns = time.time_ns()
            await connect(i, v)
            if spec.wait_first:
                await _first_event(v, spec.targets[i][2], spec.first_wait)

    t_open = time.perf_counter()
    started_ns = time.time_ns()
    await asyncio.gather(*(open_one(i, v) for i, v in enumerate(viewers)))
    # Modules and viewers live to the end: keep full collections (pauses that would
    # show as latency the server did not cause) from scanning them.
    gc.collect()
    gc.freeze()
    conn.send(("ready", time.perf_counter() - t_open, own_cpu_seconds(), started_ns))


async def _group(spec: GroupSpec, conn: Connection, ctrl: Connection | None = None) -> None:
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(200)  # opening many sockets at once overflows listen backlogs

    async def connect(i: int, v: Viewer) -> None:
        await _open(spec.targets[i], v, spec.first_index + i, spec.sources)

    index: dict[int, int] = {}

    async def again(v: Viewer) -> None:
        # Not through the opening's slots: each viewer comes back on its own, as a fleet
        # of browsers does, and what that asks of the front-ends is what is measured.
        v.back.attempt()
        await connect(index[id(v)], v)

    back = None
    if spec.reconnect and spec.read == "sse":
        back = Reconnect(again, deadline=math.inf)
    viewers = _viewers(spec, back)
    index.update((id(v), i) for i, v in enumerate(viewers))
    stop = loop.create_future()
    window = _window(spec.timeout, back, stop)
    release = loop.create_future()
    _listen(ctrl, window, release)
    all_closed = _all_closed(viewers)
    progress = asyncio.ensure_future(_report_progress(conn, viewers, back))

    try:
        await _open_all(spec, viewers, connect, sem, conn)
        if not spec.wait_window:
            window()
        await asyncio.wait([all_closed, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress
    timed_out = [not v.closed.done() for v in viewers]
    conn.send(("done", _report(viewers, timed_out)))
    # Connections still open (a dashboard's: its other streams go on) close once the
    # parent has read its counters: closing them is no cost of the window's events.
    await release
    for v in viewers:
        v.end()


def _window(
    timeout: float, back: Reconnect | None, stop: asyncio.Future[None]
) -> Callable[[], None]:
    """``window()``, called when the window begins (again: nothing): ``stop`` is done
    ``timeout`` seconds later (viewers still open then are behind), and dropped viewers
    come back until then."""
    began: list[float] = []

    def window() -> None:
        if began:
            return
        began.append(time.monotonic())
        if back is not None:
            back.deadline = began[0] + timeout
        asyncio.get_running_loop().call_later(timeout, _settle, stop)

    return window


def _all_closed(viewers: list[Viewer]) -> asyncio.Future[None]:
    """Done once every one of ``viewers`` is closed."""
    done = asyncio.get_running_loop().create_future()
    left = [len(viewers)]

    def one_closed(_: object) -> None:
        left[0] -= 1
        if not left[0]:
            _settle(done)

    for v in viewers:
        v.closed.add_done_callback(one_closed)
    return done


async def _first_event(v: Viewer, path: str, wait: float) -> None:
    """Wait for ``v``'s first event: ``BenchError`` if it is refused or none comes."""
    first = asyncio.ensure_future(v.first_event.wait())
    done, _ = await asyncio.wait(
        {first, v.closed}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
    )
    if first not in done:
        first.cancel()
        why = f"HTTP {v.status}" if v.status not in (0, 200) else f"no first event in {wait:g} s"
        raise BenchError(f"viewer {path}: {why}")


def _report(viewers: list[Viewer], timed_out: list[bool]) -> dict[str, object]:
    """What a group's viewers saw, for the parent."""
    return {
        "cpu": own_cpu_seconds(),
        "viewers": [
            (
                *(v.status, v.frames, v.last_id, v.lost, v.duplicated, v.done),
                *(v.last_rx_ns, t, v.cuts, v.retries, v.refused, v.resumed_ns),
                v.mark_ns,
                *dataclasses.astuple(v.back),
                v.mark_pub_ns,
            )
            for v, t in zip(viewers, timed_out, strict=True)
        ],
        "latencies_ns": [x for v in viewers for x in v.latencies_ns],
        "latency_at_ns": [x for v in viewers for x in v.latency_at_ns],
        "first_event_ns": [v.first_ns - v.connect_ns for v in viewers if v.first_ns],
        "finished_ns": time.time_ns(),
    }


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it is, with uvicorn[standard]): a cheaper load generator."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_group(spec: GroupSpec, conn: Connection, ctrl: Connection | None = None) -> None:
    """A child process's body: open the viewers, report ready, then report what they saw;
    progress twice a second meanwhile, and marks taken from ``ctrl``."""
    raise_nofile_limit()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_group(spec, conn, ctrl))
    except (BenchError, OSError) as exc:
        conn.send(("error", repr(exc)))
    finally:
        conn.close()
