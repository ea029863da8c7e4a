"""``python -m broadcaster bench``: load-test a running deployment.

It does not start servers. It publishes to ``--redis-url`` with ``Publisher`` and opens
``--viewers`` SSE viewers, spread over ``--streams`` streams, over the ``--url``
front-ends and over ``--procs`` viewer processes (see ``viewers.py``: a viewer is
a bare asyncio protocol, so the load generator costs less per event than the server it
measures; the report says by how much). Each event carries its publish time
(``"t": time.time_ns()``), so a delivery gives a publish-to-viewer latency. Each stream
is created with one ``data-bench-start`` event (seq 1) before the viewers connect, then
gets ``--rate`` events/s for ``--duration`` seconds (none with ``--idle``: keepalives
only), then ``finish``; every viewer must see ids 1..N once each.

With several ``--url`` front-ends, ``--route`` says which one each viewer uses, as a
load balancer would choose: ``rotate`` (viewer i on front-end i mod n, the default),
``random`` (an L4 balancer: a stream's viewers land anywhere), or ``stream`` (every viewer
of a stream on one front-end, as a balancer that hashes the stream id from the path).
``--read ds-sse`` has the viewers read each stream as a Durable Stream instead
(``GET /v1/stream/{id}?offset=-1&live=sse``: JSON arrays of the events' data, each message
a delivery), the same stream and the same events, so that only the read path differs.

Reported: deliveries/s, latency p50/p99/max, lost and duplicated events, the CPU of the
bench per 100,000 deliveries, and with ``--server-pid`` (front-ends on this machine)
their CPU per 100,000 deliveries and RSS per open connection, Redis commands per
published event (INFO commandstats deltas; the bench's own INFO excluded, its publishes
included), Redis's CPU per published event (all of it, and less what it spends idle with
the same connections open, measured for ``--idle-sample`` seconds before the window), the
front-ends subscribed to each stream's channel (Redis sends each event once to each), and
with ``--replay N`` the time ``--joiners`` late joiners take to read an N-event stream that
has ended.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol
from urllib.parse import urlsplit

from redis.asyncio import Redis, RedisCluster

from broadcaster.bench.viewers import (
    READS,
    BenchError,
    GroupSpec,
    own_cpu_seconds,
    run_group,
    sources_for,
)
from broadcaster.clients.publisher import Publisher
from broadcaster.core import connection, keys
from broadcaster.core.rlimit import raise_nofile_limit
from broadcaster.core.settings import RedisSettings

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Commands the bench itself sends for its measurements, not part of the fan-out cost.
OWN_COMMANDS = {"info"}
# Commands that read a stream: what the front-ends cost Redis, apart from the publishing.
READ_COMMANDS = ("xread", "xrange", "xrevrange", "xreadgroup")
PUBLISHES_IN_FLIGHT = 16  # overlapping publish round trips (see _ticks)
STAGGERED_IN_FLIGHT = 64  # overlapping appends with --pipeline 1 (see _staggered)
PIPELINE = 1000  # appends per pipeline when publishing to many streams at once (--pipeline)
JOIN_AFTER = 1.0  # seconds into the window when --join-during viewers begin to connect
LATENCY_SAMPLERS = 50  # viewers that record every latency; the others only check ids
ROUTES = ("rotate", "random", "stream")
NUMSUB_BATCH = 500  # channels per PUBSUB NUMSUB
SETTLED = 1000  # commands/s below which Redis is quiet before a window (_settle)
SETTLE_MAX = 120.0
FD_MARGIN = 1_000
"""Open files a viewer process keeps spare under its limit (Python, pipes, uvloop)."""
SAMPLE_EVERY = 0.5
"""Seconds between two samples of the timeline (``--plot``, and progress on stderr)."""


class EventSink(Protocol):
    """Where the bench publishes: ``Publisher`` (Redis), or a comparison's own relay."""

    async def publish(
        self, stream_id: str, events: dict[str, Any] | Sequence[dict[str, Any]]
    ) -> int: ...

    async def aclose(self) -> None: ...


# --- measurements of other processes ---


_LAST_CPU: dict[int, float] = {}
"""Each process's CPU when last read: what a process killed since (``--kill-pid``) used."""


def proc_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return _LAST_CPU.get(pid, 0.0)
    # after the ")": state is field 3, utime 14, stime 15 (1-based) -> indexes 11, 12.
    # A zombie (killed, not yet reaped) reads 0: it keeps the last value read.
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    cpu = max(cpu, _LAST_CPU.get(pid, 0.0))
    _LAST_CPU[pid] = cpu
    return cpu


def proc_io(pids: list[int]) -> dict[str, int]:
    """Socket and file I/O of processes, from ``/proc/<pid>/io``: ``syscw`` write calls and
    ``wchar`` bytes written (to sockets too), ``syscr`` and ``rchar`` likewise for reads.
    For Redis, what it sends per event, counted exactly where its CPU time is noisy."""
    total = {"syscr": 0, "syscw": 0, "rchar": 0, "wchar": 0}
    for pid in pids:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in total:
                    total[name] += int(value)
    return total


def proc_rss_kb(pid: int) -> int:
    """Resident memory; 0 once the process has died (``--kill-pid``)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0  # a zombie has no VmRSS


async def _info(redis: Redis, section: str) -> list[dict[str, Any]]:
    """One INFO section per server: each primary of a Cluster (a redis+cluster:// URL)."""
    if isinstance(redis, RedisCluster):
        per_node = await redis.info(section, target_nodes=RedisCluster.PRIMARIES)
        return list(per_node.values())
    return [await redis.info(section)]


async def command_calls(redis: Redis) -> dict[str, int]:
    calls: dict[str, int] = {}
    for stats in await _info(redis, "commandstats"):
        for key, value in stats.items():
            name = str(key).removeprefix("cmdstat_")
            if isinstance(value, dict):
                calls[name] = calls.get(name, 0) + int(value.get("calls", 0))
    return calls


async def redis_cpu_seconds(redis: Redis) -> float:
    """Redis's own CPU (user + system): where a design that fans out through Redis pays."""
    return sum(
        float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        for cpu in await _info(redis, "cpu")
    )


async def subscribers_per_channel(redis: Redis, sids: list[str]) -> list[int]:
    """How many connections are subscribed to each stream's push channel: with the
    project's front-ends, how many front-ends Redis sends each of its events to.
    ``PUBSUB SHARDNUMSUB`` on a Cluster, asked of the node serving each channel's slot."""
    if isinstance(redis, RedisCluster):
        await redis.initialize()  # the slot map, if no command has loaded it yet
        counts = []
        for sid in sids:
            channel = keys.push_channel(sid)
            node = redis.get_node_from_key(channel)
            reply = await redis.pubsub_shardnumsub(channel, target_nodes=node)
            counts.append(sum(int(n) for _, n in reply))
        return counts
    db = int(redis.connection_pool.connection_kwargs.get("db", 0) or 0)
    counts = []
    for i in range(0, len(sids), NUMSUB_BATCH):
        channels = [keys.push_channel(sid, db) for sid in sids[i : i + NUMSUB_BATCH]]
        counts += [int(n) for _, n in await redis.pubsub_numsub(*channels)]
    return counts


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return math.nan
    idx = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[idx])


# --- viewer processes ---


class Groups:
    """The viewer processes of one phase: started together, awaited together. Each sends
    its progress twice a second (``progress``: the latest of each process) and takes
    marks (``mark``)."""

    def __init__(self, specs: list[GroupSpec]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._loop = asyncio.get_running_loop()
        self._conns: list[Connection] = []
        self._ctrls: list[Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._inbox: list[asyncio.Queue[Any]] = []
        self.progress: list[tuple[int, int, int, int]] = []
        """Per process: (ns, viewers connected, frames received, viewers away)."""
        ends = []
        for spec in specs:
            parent, child = ctx.Pipe(duplex=False)
            ctrl_in, ctrl_out = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=run_group, args=(spec, child, ctrl_in), daemon=True)
            ends.append((child, ctrl_in))
            self._conns.append(parent)
            self._ctrls.append(ctrl_out)
            self._procs.append(proc)
            self._inbox.append(asyncio.Queue())
            self.progress.append((0, 0, 0, 0))
        # Started together: each start waits until its child has read its share of the
        # viewers, which it does only after importing the bench (seconds on a loaded
        # machine); one after the other, eight processes took 30 s to start.
        with ThreadPoolExecutor(len(self._procs) or 1) as pool:
            list(pool.map(lambda proc: proc.start(), self._procs))
        for i, (child, ctrl_in) in enumerate(ends):
            child.close()
            ctrl_in.close()
            threading.Thread(target=self._read, args=(i, self._conns[i]), daemon=True).start()

    def _read(self, i: int, conn: Connection) -> None:
        """A thread per process: its progress kept, anything else queued for the loop."""
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                msg = ("eof",)
            if msg[0] == "progress":
                self.progress[i] = msg[1:]
                continue
            self._loop.call_soon_threadsafe(self._inbox[i].put_nowait, msg)
            if msg[0] in ("eof", "done", "error"):
                return

    async def _recv(self, kind: str) -> list[Any]:
        out = []
        for inbox in self._inbox:
            msg = await inbox.get()
            if msg[0] == "eof":
                raise BenchError("a viewer process died")
            if msg[0] == "error":
                raise BenchError(f"viewer process: {msg[1]}")
            if msg[0] != kind:
                raise BenchError(f"viewer process: expected {kind}, got {msg[0]}")
            out.append(msg[1:])
        return out

    async def ready(self) -> list[Any]:
        """Per process: (seconds to open, CPU seconds so far, when it began, ns)."""
        return await self._recv("ready")

    async def done(self) -> list[dict[str, Any]]:
        return [m[0] for m in await self._recv("done")]

    def window(self) -> None:
        """The window began: the processes' deadline (``GroupSpec.timeout``) runs from now."""
        for ctrl in self._ctrls:
            with contextlib.suppress(OSError):
                ctrl.send(("window",))

    def mark(self, ns: int) -> None:
        """Every viewer records when it first gets an event published after ``ns``
        (``time.time_ns()``)."""
        for ctrl in self._ctrls:
            with contextlib.suppress(OSError):
                ctrl.send(("mark", ns))

    def totals(self) -> tuple[int, int, int]:
        """Viewers connected, frames received and viewers away, over the processes."""
        return (
            sum(p[1] for p in self.progress),
            sum(p[2] for p in self.progress),
            sum(p[3] for p in self.progress),
        )

    def close(self) -> None:
        for ctrl in self._ctrls:  # viewers close once their counters are read
            with contextlib.suppress(OSError):
                ctrl.send(("close",))
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in [*self._conns, *self._ctrls]:
            conn.close()


def viewer_procs(viewers: int, procs: int) -> int:
    """``procs``, or more: each viewer process keeps under its open-file limit (the hard
    one, which ``raise_nofile_limit`` raises the soft one to), with ``FD_MARGIN`` to
    spare."""
    budget = max(1, raise_nofile_limit() - FD_MARGIN)
    return max(1, procs, math.ceil(viewers / budget))


def _split(
    targets: list[tuple[str, int, str]], procs: int, read: str = "sse", **kw: Any
) -> list[GroupSpec]:
    """Contiguous shares, so each process's source addresses continue the global index;
    as many processes as the open-file limit needs (``viewer_procs``), and loopback
    source addresses for all (``sources_for``)."""
    procs = max(1, min(viewer_procs(len(targets), procs), len(targets)))
    size = math.ceil(len(targets) / procs)
    kw.setdefault("sources", sources_for(len(targets)))
    return [
        GroupSpec(targets=targets[i : i + size], first_index=i, read=read, **kw)
        for i in range(0, len(targets), size)
    ]


def _endpoint(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise BenchError(f"--url must be http://host[:port], got {url!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


# --- the run ---


async def _publish_all(
    sink: EventSink, sids: list[str], event: dict[str, Any], pipeline: int = PIPELINE
) -> list[int]:
    """``event`` to every stream: in pipelines of up to ``pipeline`` appends when the sink
    has ``publish_many`` (``Publisher`` has), so one process can offer thousands of
    publishes a second. Returns each publish's own time, ns from its send to Redis's
    reply (a pipeline's for each of its appends)."""
    many = getattr(sink, "publish_many", None)
    if many is None:
        return list(await asyncio.gather(*(_timed(sink.publish(sid, event)) for sid in sids)))
    took: list[int] = []
    for i in range(0, len(sids), pipeline):
        chunk = sids[i : i + pipeline]
        took += [await _timed(many(dict.fromkeys(chunk, event)))] * len(chunk)
    return took


async def _timed(publish: Awaitable[Any]) -> int:
    t = time.time_ns()
    await publish
    return time.time_ns() - t


Job = Callable[[], Awaitable[list[int]]]
"""Publishes, and returns each publish's own time (ns)."""


async def _on_schedule(jobs: Iterable[tuple[float, Job]], in_flight: int) -> list[int]:
    """Start each job at its ``time.perf_counter()`` time, without waiting for the ones
    before it (up to ``in_flight`` at once), so the rate holds on a loaded machine; Redis
    still numbers each stream's events in order. Returns every publish's own time,
    sorted: it bounds the part of the publish-to-viewer latency spent before Redis held
    the event, not the server's."""
    took: list[int] = []
    slots = asyncio.Semaphore(max(1, in_flight))
    running: set[asyncio.Task[None]] = set()

    async def run(job: Job) -> None:
        try:
            took.extend(await job())
        finally:
            slots.release()

    try:
        for at, job in jobs:
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            task = asyncio.create_task(run(job))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()
    return sorted(took)


def _ticks(
    sink: EventSink, sids: list[str], n: int, rate: float, t0: float, *, pad: str, pipeline: int
) -> tuple[Iterator[tuple[float, Job]], int]:
    """Tick k publishes one event to every stream at t0 + k/rate, pipelined; ticks overlap
    up to ``PUBLISHES_IN_FLIGHT`` round trips in all. The jobs, and how many at once."""
    trips = math.ceil(len(sids) / pipeline) if hasattr(sink, "publish_many") else len(sids)

    def tick() -> Awaitable[list[int]]:
        event = {"type": "data-bench", "t": time.time_ns(), "p": pad}
        return _publish_all(sink, sids, event, pipeline)

    return ((t0 + k / rate, tick) for k in range(n)), PUBLISHES_IN_FLIGHT // trips


def _staggered(
    sink: EventSink,
    sids: list[str],
    n: int,
    rate: float,
    t0: float,
    *,
    pad: str,
    kind: str = "",
    slot: float = 0.0,
) -> tuple[Iterator[tuple[float, Job]], int]:
    """Each stream on its own schedule, as independent generations append: stream j's
    k-th event at t0 + (k + j/len(sids))/rate, each append on its own round trip, so the
    appends reach Redis one by one rather than in bursts of every stream at once; up to
    ``STAGGERED_IN_FLIGHT`` overlap. With ``slot`` (seconds), the appends due within one
    slot share a round trip (a pipeline of the same appends): the bench's own CPU, not
    Redis's work, is what that saves. Events of type ``data-bench``, or ``kind``. The
    jobs, and how many at once."""

    def event() -> dict[str, Any]:
        if kind:
            return {"type": kind, "t": time.time_ns()}
        return {"type": "data-bench", "t": time.time_ns(), "p": pad}

    def one(due: list[str]) -> Job:
        many = getattr(sink, "publish_many", None)

        async def job() -> list[int]:
            if len(due) == 1 or many is None:
                return [await _timed(sink.publish(sid, event())) for sid in due]
            return [await _timed(many({sid: event() for sid in due}))] * len(due)

        return job

    streams = len(sids)
    times = (
        (t0 + (k + j / streams) / rate, sids[j])
        for k, j in (divmod(i, streams) for i in range(n * streams))
    )
    if slot <= 0:
        return ((at, one([sid])) for at, sid in times), STAGGERED_IN_FLIGHT
    slots = itertools.groupby(times, key=lambda x: int((x[0] - t0) / slot + 1e-9))
    jobs = ((t0 + k * slot, one([sid for _, sid in due])) for k, due in slots)
    return jobs, STAGGERED_IN_FLIGHT


async def _replay(sink: EventSink, args: argparse.Namespace, plan: _Plan) -> dict[str, Any]:
    """``--joiners`` viewers join at once a stream of ``--replay`` events that has ended."""
    sid = f"bench-{plan.run}-replay"
    n = args.replay
    batch = 500
    for start in range(0, n, batch):
        await sink.publish(
            sid, [{"type": "data-bench", "i": i} for i in range(start, min(n, start + batch))]
        )
    await sink.publish(sid, {"type": "finish"})
    targets = [plan.target(sid, i, stream_index=0) for i in range(args.joiners)]
    groups = Groups(
        _split(
            targets,
            args.procs,
            plan.read,
            token=args.token,
            latency_every=0,
            wait_first=False,
            timeout=600,
        )
    )
    try:
        readies = await groups.ready()
        results = await groups.done()
    finally:
        groups.close()
    views = [v for r in results for v in r["viewers"]]
    started_ns = min(r[2] for r in readies)
    seconds = (max(v[6] for v in views) - started_ns) / 1e9
    total = n + 1
    return {
        "events": total,
        "joiners": len(views),
        "seconds": seconds,
        "events_per_s": total * len(views) / seconds if seconds > 0 else math.inf,
        "lost": sum(v[3] + (total - v[2]) for v in views),
        "duplicated": sum(v[4] for v in views),
    }


@dataclass(frozen=True)
class _Plan:
    """One run's streams and load, from the arguments."""

    redis_url: str
    endpoints: list[tuple[str, int, str]]
    pids: list[int]
    """Front-end processes on this machine, for their CPU and RSS."""
    redis_pids: list[int]
    """Redis processes on this machine, for what they write per event."""
    run: str
    sids: list[str]
    quiet_sids: list[str]
    """Streams with one viewer each that get nothing in the window: a front-end's other
    watched streams, whose number must not change the cost of the others' events."""
    per_stream: int
    """Events published to each stream in the measured window (0 with ``--idle``)."""
    pad: str
    route: str
    """Which front-end each viewer uses (``ROUTES``)."""
    read: str = "sse"
    """How the viewers read (``READS``): the SSE route, Durable Streams ``live=sse``, or
    ``mux``: with ``--follow``, each on a connection that follows several streams."""
    viewers: int = 0
    follow: int = 1
    """Streams each viewer's connection follows (``--follow``): its measured stream and
    ``follow - 1`` quiet ones of its own (``dashboard_sids``)."""
    rng: random.Random = field(default_factory=lambda: random.Random(0), compare=False)
    """For ``--route random``: the same spread on every run."""

    def target(self, sid: str, viewer_index: int, stream_index: int) -> tuple[str, int, str]:
        """Host, port and path of one viewer of ``sid``, on the front-end ``route`` picks."""
        n = len(self.endpoints)
        if self.route == "stream":
            pick = stream_index % n
        elif self.route == "random":
            pick = self.rng.randrange(n)
        else:
            pick = viewer_index % n
        host, port, prefix = self.endpoints[pick]
        if self.read == "mux":
            query = "&".join(f"stream={s}" for s in [sid, *self.dashboard(viewer_index)])
            return host, port, f"{prefix}/v1/events?{query}"
        if self.read == "ds-sse":
            return host, port, f"{prefix}/v1/stream/{sid}?offset=-1&live=sse"
        return host, port, f"{prefix}/v1/streams/{sid}/events"

    def dashboard(self, viewer_index: int) -> list[str]:
        """The quiet streams viewer ``viewer_index``'s connection also follows."""
        return [f"bench-{self.run}-d{viewer_index}-{k}" for k in range(1, self.follow)]

    @property
    def dashboard_sids(self) -> list[str]:
        return [sid for i in range(self.viewers) for sid in self.dashboard(i)]

    @staticmethod
    def stream_of(path: str) -> str:
        """The stream a viewer's path reads (any way: ``.../v1/streams/{id}/events``,
        ``.../v1/stream/{id}?...``, or ``.../v1/events?stream={id}&...``, a connection
        following several streams being measured on the first it names)."""
        path, _, query = path.partition("?")
        if path.endswith("/v1/events"):
            return query.split("&", 1)[0].removeprefix("stream=")
        if path.endswith("/events"):
            return path.rsplit("/", 2)[-2]
        return path.rsplit("/", 1)[-1]

    @property
    def events_per_stream(self) -> int:
        return self.per_stream + 2  # start + data + finish

    @property
    def published(self) -> int:
        return self.per_stream * len(self.sids) + len(self.sids)  # during the measured window


@dataclass(frozen=True)
class _Counters:
    """The cost counters, read at the start and the end of the measured window."""

    calls: dict[str, int]
    redis_cpu: float
    own_cpu: float
    server_cpu: dict[int, float]
    at: float
    """``time.monotonic()`` when Redis's CPU was read."""
    redis_io: dict[str, int]
    """``proc_io`` of the ``--redis-pid`` processes (empty without)."""


async def _counters(stats_redis: Redis, plan: _Plan) -> _Counters:
    calls = await command_calls(stats_redis)
    redis_cpu = await redis_cpu_seconds(stats_redis)
    at = time.monotonic()
    redis_io = proc_io(plan.redis_pids) if plan.redis_pids else {}
    # the bench's own CPU inside the Redis INFO reads
    server_cpu = {pid: proc_cpu_seconds(pid) for pid in plan.pids}
    return _Counters(calls, redis_cpu, own_cpu_seconds(), server_cpu, at, redis_io)


async def _idle_rates(stats_redis: Redis, pids: list[int], seconds: float) -> tuple[float, float]:
    """Redis's and the servers' CPU seconds per second with the viewers connected and
    nothing published: Redis's cron, expiry and client bookkeeping, the servers'
    keepalives, timers and sweeps, which they spend whatever the events."""
    if seconds <= 0:
        return 0.0, 0.0
    cpu0, t0 = await redis_cpu_seconds(stats_redis), time.monotonic()
    srv0 = sum(proc_cpu_seconds(p) for p in pids)
    await asyncio.sleep(seconds)
    took = time.monotonic() - t0
    srv = (sum(proc_cpu_seconds(p) for p in pids) - srv0) / took
    return (await redis_cpu_seconds(stats_redis) - cpu0) / took, srv


@dataclass(frozen=True)
class _Window:
    """The measured window: what the viewers saw, and the cost counters read around it."""

    targets: list[tuple[str, int, str]]
    readies: list[Any]
    results: list[dict[str, Any]]
    t_start_ns: int
    publish_seconds: float
    took: list[int]
    before: _Counters
    after: _Counters
    redis_idle_rate: float
    """Redis's CPU seconds per second before the window, idle (``_idle_rates``)."""
    server_idle_rate: float
    """The servers' CPU seconds per second before the window, idle (``_idle_rates``)."""
    subscribers: list[int]
    """Per measured stream, the connections subscribed to its channel in the window."""
    server_cpu_idle: dict[int, float]
    """The servers' CPU when publishing ended (``--idle``: what keepalives cost)."""
    rss_before: dict[int, int]
    rss_after: dict[int, int]
    quiet: list[dict[str, Any]]
    """What the quiet streams' viewers saw (and, joining during the window, how long
    each took from connecting to its first event)."""
    sampler: _Sampler
    kill: _Kill | None
    connect_cpu: float
    """The servers' CPU seconds while the viewers connected (each to its first event)."""

    @property
    def views(self) -> list[Any]:
        return [v for r in self.results for v in r["viewers"]]

    @property
    def deliveries(self) -> int:
        return sum(v[1] for v in self.views)

    @property
    def measured(self) -> int:
        return self.deliveries - len(self.views)  # all but the seq-1 replay each viewer got first


def _plan(args: argparse.Namespace) -> _Plan:
    try:  # the same variables as the processes: REDIS_URL, REDIS_CLUSTER, REDIS_SENTINELS
        redis_url = args.redis_url or RedisSettings().engine_url()
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    if not redis_url:
        raise BenchError("--redis-url (or REDIS_URL) is required")
    endpoints = [_endpoint(u) for u in (args.url or ["http://127.0.0.1:8000"])]
    if args.viewers < 1 or args.streams < 1 or args.rate <= 0 or args.duration <= 0:
        raise BenchError("--viewers, --streams, --rate and --duration must be positive")
    if args.procs < 1:
        raise BenchError("--procs must be positive")
    if args.join_during and not args.quiet_streams:
        raise BenchError("--join-during needs --quiet-streams")
    if args.pipeline < 1:
        raise BenchError("--pipeline must be at least 1")
    if args.route not in ROUTES:
        raise BenchError(f"--route must be one of {', '.join(ROUTES)}")
    if args.idle_sample < 0:
        raise BenchError("--idle-sample must not be negative")
    if args.read not in READS:
        raise BenchError(f"--read must be one of {', '.join(READS)}")
    if args.follow < 1 or (args.follow > 1 and args.read != "sse"):
        raise BenchError("--follow must be positive, and reads with the SSE route only")
    if args.kill_pid and args.idle:
        raise BenchError("--kill-pid needs events to follow (not --idle)")
    if args.kill_after is None:
        args.kill_after = args.duration / 3
    if args.latency_samplers < 1:
        raise BenchError("--latency-samplers must be positive")
    run = uuid.uuid4().hex[:10]
    return _Plan(
        redis_url=redis_url,
        endpoints=endpoints,
        pids=args.server_pid or [],
        redis_pids=args.redis_pid or [],
        run=run,
        sids=[f"bench-{run}-{i}" for i in range(args.streams)],
        quiet_sids=[f"bench-{run}-q{i}" for i in range(args.quiet_streams)],
        per_stream=0 if args.idle else max(1, round(args.rate * args.duration)),
        pad="x" * max(0, args.event_bytes - 60),  # ~60 bytes of JSON besides the padding
        route=args.route,
        read="mux" if args.follow > 1 else args.read,
        viewers=args.viewers,
        follow=args.follow,
    )


async def run_bench(args: argparse.Namespace, sink: EventSink | None = None) -> dict[str, Any]:
    """One bench run. ``sink`` replaces the Redis publisher (the comparison's ceiling)."""
    plan = _plan(args)
    raise_nofile_limit()
    pub: EventSink = sink if sink is not None else Publisher.from_url(plan.redis_url)
    stats_redis = connection.command_client(plan.redis_url)
    try:
        await _open_streams(pub, plan)
        window = await _measure(args, plan, pub, stats_redis)
        # Not counted: the window is over. A deployment's bench leaves no stream open.
        await _publish_all(pub, plan.dashboard_sids, {"type": "finish"})
        replay = await _replay(pub, args, plan) if args.replay > 0 else None
    finally:
        await pub.aclose()
        await stats_redis.aclose()
    return {
        **_load_figures(args, plan, window),
        **_delivery_figures(plan, window),
        **_cost_figures(args, plan, window),
        **_time_figures(window),
        "replay": replay,
    }


async def _open_streams(pub: EventSink, plan: _Plan) -> None:
    """Seq 1 of every stream, before the viewers connect: a viewer is ready once it has
    it, so the measured window starts with every viewer caught up."""
    start = {"type": "data-bench-start", "t": time.time_ns()}
    await _publish_all(pub, [*plan.sids, *plan.quiet_sids], start)
    await _publish_all(pub, plan.dashboard_sids, start)


def _start_viewers(
    args: argparse.Namespace, plan: _Plan
) -> tuple[list[tuple[str, int, str]], Groups]:
    """``--viewers`` viewers, spread over the streams and front-ends, in ``--procs``
    processes; they report ready once each has seen its stream's first event."""
    targets = [
        plan.target(plan.sids[i % args.streams], i, stream_index=i % args.streams)
        for i in range(args.viewers)
    ]
    every = max(1, args.viewers // max(1, args.latency_samplers))
    groups = Groups(
        _split(
            targets,
            args.procs,
            plan.read,
            token=args.token,
            latency_every=every,
            timeout=args.duration + args.deadline,
            first_wait=args.first_wait,
            wait_window=True,
        )
    )
    return targets, groups


async def _measure(
    args: argparse.Namespace, plan: _Plan, pub: EventSink, stats_redis: Redis
) -> _Window:
    """Open the viewers, publish on schedule while they watch, then ``finish``, reading the
    cost counters around that window. The quiet streams' viewers open before the window,
    or during it (``--join-during``, ``JOIN_AFTER`` seconds in); their streams end after
    the counters are read, so closing thousands of them is not counted as the cost of
    the others' events. Meanwhile the timeline is sampled (``_Sampler``), and with
    ``--kill-pid`` that front-end is killed ``--kill-after`` seconds into the window."""
    pids = plan.pids
    rss_before = {pid: proc_rss_kb(pid) for pid in pids}
    before_window = not args.join_during and plan.quiet_sids
    _say(f"opening {args.viewers} viewer(s), {len(plan.quiet_sids) if before_window else 0} quiet")
    sampler = _Sampler(args, plan)
    cpu_start = sum(proc_cpu_seconds(pid) for pid in pids)
    targets, groups = _start_viewers(args, plan)
    sampler.phases.append(groups)
    sampling = asyncio.create_task(sampler.run())
    try:
        readies = await groups.ready()
        connect_cpu = sum(proc_cpu_seconds(pid) for pid in pids) - cpu_start
        quiet = await _open_quiet(args, plan, 0.0, sampler) if before_window else None
        await _settle(stats_redis)
        rss_after = {pid: proc_rss_kb(pid) for pid in pids}
        subscribers = await subscribers_per_channel(stats_redis, plan.sids)
        idle_rate, server_idle = await _idle_rates(stats_redis, pids, args.idle_sample)
        before = await _counters(stats_redis, plan)
        t_start_ns = time.time_ns()
        window = await _window(
            args, plan, pub, stats_redis=stats_redis, groups=groups, sampler=sampler, quiet=quiet
        )
    finally:
        sampling.cancel()
        for phase in sampler.phases:  # the viewers, and the quiet streams' (_open_quiet)
            phase.close()
    return _Window(
        targets=targets,
        readies=readies,
        t_start_ns=t_start_ns,
        before=before,
        redis_idle_rate=idle_rate,
        server_idle_rate=server_idle,
        subscribers=subscribers,
        rss_before=rss_before,
        rss_after=rss_after,
        sampler=sampler,
        connect_cpu=connect_cpu,
        **window,
    )


async def _window(
    args: argparse.Namespace,
    plan: _Plan,
    pub: EventSink,
    *,
    stats_redis: Redis,
    groups: Groups,
    sampler: _Sampler,
    quiet: Groups | None,
) -> dict[str, Any]:
    """The window itself: publish on schedule, then ``finish``; read the counters once
    every viewer is done, then end the quiet streams. ``_Window``'s fields it measures."""
    groups.window()
    sampler.at("window", time.time_ns())
    _say(f"publishing for {args.duration:g} s")
    joining = None
    if args.join_during:
        joining = asyncio.create_task(_open_quiet(args, plan, JOIN_AFTER, sampler))
    t0 = time.perf_counter()
    kill = asyncio.create_task(_kill_later(args, groups, t0, sampler)) if args.kill_pid else None
    try:
        try:
            took, publish_seconds = await _publish_window(args, plan, pub, t0)
            srv_idle = {pid: proc_cpu_seconds(pid) for pid in plan.pids}
            sampler.at("published", time.time_ns())
            await _finish(args, plan, pub)
            results = await groups.done()
            after = await _counters(stats_redis, plan)
        finally:
            if joining is not None:
                quiet = await joining
        _say("window over; ending the streams")
        quiet_results = await _finish_quiet(pub, plan, quiet)
        killed = await kill if kill is not None else None
    finally:
        if kill is not None:
            kill.cancel()
    return {
        "results": results,
        "publish_seconds": publish_seconds,
        "took": took,
        "after": after,
        "server_cpu_idle": srv_idle,
        "quiet": quiet_results,
        "kill": killed,
    }


async def _settle(stats_redis: Redis) -> None:
    """Wait until Redis is quiet (fewer than ``SETTLED`` commands a second for two
    seconds running, at most ``SETTLE_MAX`` seconds): what the front-ends do after viewers
    connect (their viewer counts, written a moment after the joins) is the cost of
    connecting, not of the events the window measures. Two seconds, not one: a
    front-end's garbage collection can stop it for a second."""
    t0 = time.monotonic()
    calls = sum((await command_calls(stats_redis)).values())
    quiet = 0
    while time.monotonic() - t0 < SETTLE_MAX:
        await asyncio.sleep(1.0)
        now = sum((await command_calls(stats_redis)).values())
        quiet = quiet + 1 if now - calls < SETTLED else 0
        if quiet == 2:
            return
        calls = now
    _say(f"Redis still busy after {SETTLE_MAX:g} s; measuring anyway")


@dataclass
class _Kill:
    """A front-end killed in the window (``--kill-pid``)."""

    pid: int
    at_ns: int
    """When (``time.time_ns()``)."""
    at_s: float
    """Seconds into the window."""


async def _kill_later(
    args: argparse.Namespace, groups: Groups, t0: float, sampler: _Sampler
) -> _Kill:
    """``kill -9`` the front-end ``--kill-pid``, ``--kill-after`` seconds into the window;
    every viewer then records when it first gets an event published after that."""
    await asyncio.sleep(max(0.0, t0 + args.kill_after - time.perf_counter()))
    at_ns = time.time_ns()
    os.kill(args.kill_pid, signal.SIGKILL)
    at_s = time.perf_counter() - t0
    groups.mark(at_ns)
    sampler.at("kill", at_ns)
    _say(f"killed front-end {args.kill_pid} (kill -9), {at_s:.1f} s into the window")
    return _Kill(args.kill_pid, at_ns, at_s)


class _Sampler:
    """The run's timeline, every ``SAMPLE_EVERY`` s from the first viewer's start: viewers
    connected and away, frames received (the viewer processes' latest progress), each
    front-end's RSS; a progress line on stderr every ``--progress`` seconds."""

    def __init__(self, args: argparse.Namespace, plan: _Plan) -> None:
        self.phases: list[Groups] = []
        self._pids = plan.pids
        self._target = args.viewers + len(plan.quiet_sids)
        self._every = args.progress
        self.origin_ns = time.time_ns()
        self.t: list[float] = []
        self.connected: list[int] = []
        self.frames: list[int] = []
        self.away: list[int] = []
        self.rss_kb: dict[int, list[int]] = {pid: [] for pid in plan.pids}
        self.marks: dict[str, float] = {}
        """Moments of the run, seconds from the origin: window, published, kill."""

    def at(self, what: str, ns: int) -> None:
        self.marks[what] = (ns - self.origin_ns) / 1e9

    def sample(self) -> None:
        totals = [g.totals() for g in self.phases]
        self.t.append((time.time_ns() - self.origin_ns) / 1e9)
        self.connected.append(sum(c for c, _, _ in totals))
        self.frames.append(sum(f for _, f, _ in totals))
        self.away.append(sum(a for _, _, a in totals))
        for pid, series in self.rss_kb.items():
            series.append(proc_rss_kb(pid))

    async def run(self) -> None:
        said = 0.0
        while True:
            await asyncio.sleep(SAMPLE_EVERY)
            self.sample()
            if self._every > 0 and self.t[-1] - said >= self._every:
                said = self.t[-1]
                self._say()

    def _say(self) -> None:
        back = max(0, len(self.t) - 1 - round(self._every / SAMPLE_EVERY))
        rate = (self.frames[-1] - self.frames[back]) / max(1e-9, self.t[-1] - self.t[back])
        away = f", {self.away[-1]:,} reconnecting" if self.away[-1] else ""
        rss = sum(s[-1] for s in self.rss_kb.values())
        memory = f", front-ends {rss / 1024**2:.2f} GiB" if self.rss_kb else ""
        _say(
            f"{self.t[-1]:5.0f} s: {self.connected[-1]:,} of {self._target:,} viewers "
            f"connected{away}, {self.frames[-1]:,} events delivered ({rate:,.0f}/s){memory}"
        )

    def figures(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "connected": self.connected,
            "deliveries": self.frames,
            "away": self.away,
            "rss_kb": {str(pid): s for pid, s in self.rss_kb.items()},
            "marks": self.marks,
        }


def _say(what: str) -> None:
    """Progress on stderr (the report goes to stdout), to time a profiler by."""
    print(f"bench {time.strftime('%H:%M:%S')}: {what}", file=sys.stderr, flush=True)


async def _open_quiet(
    args: argparse.Namespace, plan: _Plan, after: float, sampler: _Sampler
) -> Groups:
    """One viewer per quiet stream, ``after`` seconds from now; returns once every one has
    its stream's first event (or fails, after ``--first-wait``)."""
    await asyncio.sleep(after)
    targets = [plan.target(sid, i, stream_index=i) for i, sid in enumerate(plan.quiet_sids)]
    specs = _split(
        targets,
        args.procs,
        plan.read,
        token=args.token,
        latency_every=0,
        timeout=args.duration + args.deadline,
        first_wait=args.first_wait,
    )
    groups = Groups(specs)
    sampler.phases.append(groups)
    try:
        await groups.ready()
    except BaseException:
        groups.close()
        raise
    return groups


async def _finish_quiet(pub: EventSink, plan: _Plan, quiet: Groups | None) -> list[dict[str, Any]]:
    if quiet is None:
        return []
    await _publish_all(pub, plan.quiet_sids, {"type": "finish", "t": time.time_ns()})
    return await quiet.done()


async def _finish(args: argparse.Namespace, plan: _Plan, pub: EventSink) -> None:
    """End every stream with ``finish``: on the streams' own schedule with
    ``--pipeline 1`` (spread over one interval, as independent generations end), else at
    once. Ten thousand streams ending in one burst would be a load of its own, which the
    last events' latency would show."""
    if args.pipeline != 1 or args.idle:
        await _publish_all(pub, plan.sids, {"type": "finish", "t": time.time_ns()})
        return
    jobs, in_flight = _staggered(
        pub,
        plan.sids,
        1,
        args.rate,
        time.perf_counter(),
        pad="",
        kind="finish",
        slot=args.slot_ms / 1000,
    )
    await _on_schedule(jobs, in_flight)


async def _publish_window(
    args: argparse.Namespace, plan: _Plan, pub: EventSink, t0: float
) -> tuple[list[int], float]:
    """``--rate`` events/s to each stream for ``--duration`` from ``t0`` (with ``--idle``,
    nothing for as long). Returns each tick's publish time (sorted, ns) and the seconds it
    all took."""
    if args.idle:
        await asyncio.sleep(args.duration)
    n, rate, pad = plan.per_stream, args.rate, plan.pad
    if args.pipeline == 1:
        jobs, in_flight = _staggered(pub, plan.sids, n, rate, t0, pad=pad, slot=args.slot_ms / 1000)
    else:
        jobs, in_flight = _ticks(pub, plan.sids, n, rate, t0, pad=pad, pipeline=args.pipeline)
    return await _on_schedule(jobs, in_flight), time.perf_counter() - t0


def _load_figures(args: argparse.Namespace, plan: _Plan, w: _Window) -> dict[str, Any]:
    watching: dict[str, int] = {}
    for _, _, path in w.targets:
        sid = plan.stream_of(path)
        watching[sid] = watching.get(sid, 0) + 1
    return {
        "urls": [f"http://{h}:{p}{pre}" for h, p, pre in plan.endpoints],
        "viewers": args.viewers,
        "streams": args.streams,
        "rate": 0 if args.idle else args.rate,
        "duration": args.duration,
        "event_bytes": args.event_bytes,
        "read": plan.read,
        "follow": plan.follow,
        "procs": len(w.readies),
        "open_seconds": max(r[0] for r in w.readies),
        "per_stream": [
            {"stream": sid, "viewers": watching.get(sid, 0), "events": plan.events_per_stream}
            for sid in plan.sids
        ],
    }


def _delivery_figures(plan: _Plan, w: _Window) -> dict[str, Any]:
    views = w.views
    events_per_stream = plan.events_per_stream
    # A viewer the server ended early lost its tail; one still open at the deadline was
    # merely slower than the offered load (its tail is "undelivered", not lost).
    lost = sum(v[3] + (0 if v[7] else events_per_stream - v[2]) for v in views)
    undelivered = sum(events_per_stream - v[2] for v in views if v[7])
    end_ns = max(v[6] for v in views)
    window = (end_ns - w.t_start_ns) / 1e9
    latencies = sorted(lat for r in w.results for lat in r["latencies_ns"])
    return {
        "events_published": plan.published,
        "publish_rate": plan.per_stream * len(plan.sids) / w.publish_seconds,
        "deliveries": w.deliveries,
        "delivered_events_per_s": w.measured / window if window > 0 else math.nan,
        "window_s": window,
        "latency_ms": {
            "p50": percentile(latencies, 0.50) / 1e6,
            "p99": percentile(latencies, 0.99) / 1e6,
            "max": percentile(latencies, 1.0) / 1e6,
        },
        "latency_samples": len(latencies),
        "publish_ms": {
            "p50": percentile(w.took, 0.50) / 1e6,
            "p99": percentile(w.took, 0.99) / 1e6,
        },
        "lost": lost,
        "duplicated": sum(v[4] for v in views),
        "timed_out_viewers": sum(1 for v in views if v[7]),
        "undelivered_at_deadline": undelivered,
        **_quiet_figures(w.quiet),
    }


def _time_figures(w: _Window) -> dict[str, Any]:
    """Over time: the timeline (``_Sampler``), the latency per second of the run and its
    distribution, the front-ends' peak memory, the kill and how the viewers came back."""
    origin = w.sampler.origin_ns
    at = [x for r in w.results for x in r["latency_at_ns"]]
    lat = [x for r in w.results for x in r["latencies_ns"]]
    per_second: dict[int, list[int]] = {}
    for t, x in zip(at, lat, strict=True):
        per_second.setdefault(int((t - origin) // 1_000_000_000), []).append(x)
    seconds = sorted(per_second)
    buckets = [sorted(per_second[k]) for k in seconds]
    edges = [10 ** (e / 10) for e in range(-10, 51)]  # 0.1 ms .. 100 s, ten per decade
    counts = [0] * (len(edges) - 1)
    for x in lat:
        i = bisect.bisect_right(edges, x / 1e6) - 1
        counts[min(max(i, 0), len(counts) - 1)] += 1
    rss = w.sampler.rss_kb
    peak = max((sum(s[i] for s in rss.values()) for i in range(len(w.sampler.t))), default=0)
    starts = [r[2] for r in w.readies]
    return {
        "connect_seconds": (max(r[2] + r[0] * 1e9 for r in w.readies) - min(starts)) / 1e9,
        "server_cpu_ms_per_connect": w.connect_cpu * 1000 / len(w.views) if w.views else None,
        "server_rss_peak_kb": max(peak, sum(w.rss_after.values())) if rss else None,
        "timeline": w.sampler.figures(),
        "latency_timeline": {
            "t": [k + 0.5 for k in seconds],
            "p50": [percentile(b, 0.50) / 1e6 for b in buckets],
            "p99": [percentile(b, 0.99) / 1e6 for b in buckets],
            "max": [b[-1] / 1e6 for b in buckets],
            "n": [len(b) for b in buckets],
        },
        "latency_histogram": {"edges_ms": edges, "counts": counts},
        "kill": _kill_figures(w) if w.kill is not None else None,
    }


def _kill_figures(w: _Window) -> dict[str, Any]:
    """What a front-end's ``kill -9`` did: the viewers it cut, how soon each was back (its
    request with ``Last-Event-ID`` answered 200), and how soon every viewer had an event
    published after the kill."""
    assert w.kill is not None
    kill = w.kill
    views = w.views
    cut = [v for v in views if v[8]]
    resumed = sorted(v[11] - kill.at_ns for v in cut if v[11])
    nexts = sorted(v[12] - kill.at_ns for v in views if v[12])

    def spread(xs: list[int]) -> dict[str, float]:
        return {q: percentile(xs, f) / 1e9 for q, f in (("p50", 0.5), ("p99", 0.99), ("max", 1))}

    return {
        "pid": kill.pid,
        "at_s": kill.at_s,
        "viewers_cut": len(cut),
        "not_resumed": sum(1 for v in cut if not v[11]),
        "retries": sum(v[9] for v in views),
        "refused_503": sum(v[10] for v in views),
        "resumed_s": spread(resumed),
        "without_next_event": len(views) - len(nexts),
        "next_event_s": spread(nexts),
    }


def _quiet_figures(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The quiet streams' viewers: each must see its start and finish, once; and how long
    each took from connecting to its first event."""
    views = [v for r in results for v in r["viewers"]]
    firsts = sorted(t for r in results for t in r["first_event_ns"])
    return {
        "quiet_viewers": len(views),
        "quiet_lost": sum(v[3] + (0 if v[7] else 2 - v[2]) for v in views),
        "quiet_duplicated": sum(v[4] for v in views),
        "first_event_ms": {
            "p50": percentile(firsts, 0.50) / 1e6,
            "p99": percentile(firsts, 0.99) / 1e6,
            "max": percentile(firsts, 1.0) / 1e6,
        },
    }


def _command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Redis commands run in the window, by name, without the bench's own."""
    delta = {
        name: after.get(name, 0) - before.get(name, 0)
        for name in set(after) | set(before)
        if name not in OWN_COMMANDS
    }
    return {k: v for k, v in sorted(delta.items()) if v}


def _cost_figures(args: argparse.Namespace, plan: _Plan, w: _Window) -> dict[str, Any]:
    pids = plan.pids
    published = plan.published
    delta = _command_delta(w.before.calls, w.after.calls)
    per_100k = 100_000 / w.measured if w.measured > 0 else math.nan
    viewer_cpu = sum(r["cpu"] for r in w.results) - sum(r[1] for r in w.readies)
    srv0, srv1 = w.before.server_cpu, w.after.server_cpu
    publisher_cpu = w.after.own_cpu - w.before.own_cpu
    redis_cpu = w.after.redis_cpu - w.before.redis_cpu
    redis_busy = redis_cpu - w.redis_idle_rate * (w.after.at - w.before.at)
    server_cpu = sum(srv1[p] - srv0[p] for p in pids) if pids else None
    rss_growth = sum(w.rss_after[p] - w.rss_before[p] for p in pids)
    return {
        "client_cpu_s_per_100k": (viewer_cpu + publisher_cpu) * per_100k,
        "viewer_cpu_s_per_100k": viewer_cpu * per_100k,
        "publisher_cpu_s_per_100k": publisher_cpu * per_100k,
        "server_cpu_s": server_cpu,
        "server_idle_cpu_s": (
            sum(w.server_cpu_idle[p] - srv0[p] for p in pids) if pids and args.idle else None
        ),
        "server_cpu_s_per_100k": server_cpu * per_100k if server_cpu is not None else None,
        "server_busy_cpu_s_per_100k": (
            (server_cpu - w.server_idle_rate * (w.after.at - w.before.at)) * per_100k
            if server_cpu is not None
            else None
        ),
        "server_idle_cpu_per_s": w.server_idle_rate,
        "redis_cpu_s_per_100k": redis_cpu * per_100k,
        "redis_cpu_us_per_event": redis_cpu * 1e6 / published,
        "redis_idle_cpu_per_s": w.redis_idle_rate,
        "redis_busy_us_per_event": redis_busy * 1e6 / published,
        **_redis_io_figures(w, published),
        "subscribers_per_stream": (
            sum(w.subscribers) / len(w.subscribers) if w.subscribers else math.nan
        ),
        "server_rss_kb": sum(w.rss_after.values()) if pids else None,
        "server_rss_kb_per_connection": rss_growth / len(w.views) if pids else None,
        "redis_commands_per_event": sum(delta.values()) / published,
        "redis_read_commands_per_event": sum(delta.get(c, 0) for c in READ_COMMANDS) / published,
        "redis_xread_per_event": delta.get("xread", 0) / published,
        "redis_commands": delta,
    }


def _redis_io_figures(w: _Window, published: int) -> dict[str, float | None]:
    """Per published event, Redis's write calls and bytes written (the replies to the
    publisher, and the messages to front-ends) and its read calls, with ``--redis-pid``."""
    if not w.before.redis_io:
        return dict.fromkeys(
            ("redis_writes_per_event", "redis_bytes_out_per_event", "redis_reads_per_event")
        )
    delta = {k: w.after.redis_io[k] - v for k, v in w.before.redis_io.items()}
    return {
        "redis_writes_per_event": delta["syscw"] / published,
        "redis_bytes_out_per_event": delta["wchar"] / published,
        "redis_reads_per_event": delta["syscr"] / published,
    }


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.3f}{unit}" if abs(value) < 100 else f"{value:,.0f}{unit}"
    return f"{value:,}{unit}"


def _kill_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    k = r["kill"]
    if k is None:
        return []
    back, nxt = k["resumed_s"], k["next_event_s"]
    return [
        (
            "front-end killed",
            f"pid {k['pid']} {k['at_s']:.1f} s into the window; {k['viewers_cut']:,} viewers "
            f"cut, {k['retries']:,} reconnections ({k['refused_503']:,} answered 503)",
        ),
        (
            "cut viewers back",
            f"p50 {_fmt(back['p50'])} / p99 {_fmt(back['p99'])} / max {_fmt(back['max'])} s "
            f"after the kill; {k['not_resumed']} never",
        ),
        (
            "every viewer's next event",
            f"p50 {_fmt(nxt['p50'])} / p99 {_fmt(nxt['p99'])} / max {_fmt(nxt['max'])} s after "
            f"the kill (the first published after it); {k['without_next_event']} without",
        ),
    ]


def _quiet_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    if not r["quiet_viewers"]:
        return []
    first = r["first_event_ms"]
    return [
        (
            "quiet streams' viewers",
            f"{_fmt(r['quiet_viewers'])}, lost / dup {r['quiet_lost']} / {r['quiet_duplicated']}",
        ),
        (
            "connect to first event",
            f"p50 {_fmt(first['p50'])} / p99 {_fmt(first['p99'])} / max {_fmt(first['max'])} ms",
        ),
    ]


def render(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    rows = [
        ("front-ends", ", ".join(r["urls"])),
        (
            "load",
            f"{r['viewers']} viewers, {r['streams']} stream(s), {r['rate']} ev/s/stream, "
            f"{r['duration']} s, {r['event_bytes']} B, {r['procs']} viewer process(es), "
            f"read {r['read']}",
        ),
        ("events published", f"{_fmt(r['events_published'])} ({_fmt(r['publish_rate'])} ev/s)"),
        ("deliveries", _fmt(r["deliveries"])),
        ("delivered events/s", _fmt(r["delivered_events_per_s"])),
        (
            "latency p50/p99/max",
            f"{_fmt(lat['p50'])} / {_fmt(lat['p99'])} / {_fmt(lat['max'])} ms "
            f"({_fmt(r['latency_samples'])} samples)",
        ),
        (
            "of which publishing p50/p99",
            f"{_fmt(r['publish_ms']['p50'])} / {_fmt(r['publish_ms']['p99'])} ms "
            "(the publisher's own wait for Redis's reply)",
        ),
        ("lost / duplicated", f"{r['lost']} / {r['duplicated']}"),
        (
            "all connected in",
            f"{_fmt(r['connect_seconds'], ' s')} (each with its first event), server CPU "
            f"{_fmt(r['server_cpu_ms_per_connect'], ' ms')} per connection",
        ),
        *_kill_rows(r),
        *_quiet_rows(r),
        (
            "at the deadline",
            f"{r['timed_out_viewers']} viewers still behind, "
            f"{_fmt(r['undelivered_at_deadline'])} deliveries undelivered",
        ),
        *_cost_rows(r),
    ]
    if r["replay"] is not None:
        rp = r["replay"]
        rows.append(
            (
                "late-joiner replay",
                f"{rp['joiners']} x {rp['events']} events in {_fmt(rp['seconds'], ' s')} "
                f"({_fmt(rp['events_per_s'])} ev/s), lost {rp['lost']}, dup {rp['duplicated']}",
            )
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _cost_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    srv, cli = r["server_cpu_s_per_100k"], r["client_cpu_s_per_100k"]
    return [
        (
            "bench CPU per 100k deliv.",
            f"{_fmt(cli, ' s')} (viewers {_fmt(r['viewer_cpu_s_per_100k'], ' s')}, "
            f"publisher {_fmt(r['publisher_cpu_s_per_100k'], ' s')})",
        ),
        ("server CPU per 100k deliv.", _fmt(srv, " s")),
        (
            "... less the servers' idle CPU",
            f"{_fmt(r['server_busy_cpu_s_per_100k'], ' s')} "
            f"(idle: {_fmt(r['server_idle_cpu_per_s'] * 1000, ' ms')} per s)",
        ),
        (
            "server CPU / bench CPU",
            _fmt(srv / cli) if srv is not None and cli and math.isfinite(cli) else "n/a",
        ),
        ("server CPU in window", _fmt(r["server_cpu_s"], " s")),
        ("Redis CPU per 100k deliv.", _fmt(r["redis_cpu_s_per_100k"], " s")),
        ("Redis CPU per published event", _fmt(r["redis_cpu_us_per_event"], " us")),
        (
            "... less Redis's idle CPU",
            f"{_fmt(r['redis_busy_us_per_event'], ' us')} "
            f"(idle: {_fmt(r['redis_idle_cpu_per_s'] * 1000, ' ms')} per s)",
        ),
        (
            "Redis writes per event",
            f"{_fmt(r['redis_writes_per_event'])} calls, "
            f"{_fmt(r['redis_bytes_out_per_event'], ' B')} (with --redis-pid)",
        ),
        (
            "subscribers per stream",
            f"{_fmt(r['subscribers_per_stream'])} (front-ends Redis sends each event to)",
        ),
        ("server RSS", _fmt(r["server_rss_kb"], " KiB")),
        ("server RSS at its peak", _fmt(r["server_rss_peak_kb"], " KiB")),
        ("server RSS per connection", _fmt(r["server_rss_kb_per_connection"], " KiB")),
        ("Redis commands per event (all)", _fmt(r["redis_commands_per_event"])),
        ("Redis stream reads per event", _fmt(r["redis_read_commands_per_event"])),
        ("Redis XREAD per event", _fmt(r["redis_xread_per_event"])),
        ("Redis commands", ", ".join(f"{k}={v}" for k, v in r["redis_commands"].items())),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _load_arguments(parser)
    _spread_arguments(parser)
    _measure_arguments(parser)


def _spread_arguments(parser: argparse.ArgumentParser) -> None:
    """How the load reaches Redis and the front-ends."""
    parser.add_argument(
        "--pipeline",
        type=int,
        default=PIPELINE,
        metavar="N",
        help=f"appends per round trip to Redis in the window ({PIPELINE}); 1: each on its own, "
        "the streams' appends spread over each 1/rate interval, as independent generations "
        "append",
    )
    parser.add_argument(
        "--slot-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="with --pipeline 1: the appends due within MS milliseconds of each other share "
        "a round trip (0, none): thousands of streams' appends a second cost the bench a "
        "core otherwise",
    )
    parser.add_argument(
        "--route",
        choices=ROUTES,
        default="rotate",
        help="with several --url: viewer i on front-end i mod n (rotate, the default), on a "
        "random one (random: an L4 balancer), or every viewer of a stream on one (stream: "
        "a balancer hashing the stream id from the path)",
    )


def _load_arguments(parser: argparse.ArgumentParser) -> None:
    """Where, and what load to offer."""
    parser.add_argument(
        "--url",
        action="append",
        help="front-end base URL (default http://127.0.0.1:8000); repeat to spread viewers",
    )
    parser.add_argument(
        "--redis-url",
        help="Redis to publish to and read stats from ($REDIS_URL); a Redis Cluster as "
        "redis+cluster://host:port[,host:port...]",
    )
    parser.add_argument("--viewers", type=int, default=100, help="SSE viewers (100)")
    parser.add_argument("--streams", type=int, default=1, help="streams, viewers spread (1)")
    parser.add_argument("--rate", type=float, default=100, help="events/s per stream (100)")
    parser.add_argument("--duration", type=float, default=10, help="seconds of publishing (10)")
    parser.add_argument(
        "--deadline",
        type=float,
        default=60,
        help="seconds after publishing for viewers to finish, then counted as behind (60)",
    )
    parser.add_argument(
        "--idle", action="store_true", help="publish nothing for --duration (keepalives only)"
    )
    parser.add_argument("--event-bytes", type=int, default=100, help="event size (100)")
    parser.add_argument(
        "--quiet-streams",
        type=int,
        default=0,
        metavar="N",
        help="also N streams with one viewer each that get nothing while the others are "
        "measured: what watching many streams costs the ones that flow (0)",
    )
    parser.add_argument(
        "--follow",
        type=int,
        default=1,
        metavar="K",
        help="each viewer follows K streams on one connection (GET /v1/events): its own "
        "stream and K-1 quiet ones, a dashboard's; measured on its own stream (1)",
    )
    parser.add_argument(
        "--join-during",
        action="store_true",
        help=f"the quiet streams' viewers connect {JOIN_AFTER:g} s into the window; reports "
        "how long each took to get its first event",
    )
    parser.add_argument(
        "--first-wait",
        type=float,
        default=30,
        help="seconds a viewer may wait for its first event before the run fails (30)",
    )


def _measure_arguments(parser: argparse.ArgumentParser) -> None:
    """How the viewers are run, and what else is measured."""
    parser.add_argument(
        "--procs",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 2),
        help="viewer processes (half the CPUs): the bench must not be the bottleneck",
    )
    parser.add_argument(
        "--replay", type=int, default=0, metavar="N", help="also time late joiners of N events"
    )
    parser.add_argument(
        "--joiners", type=int, default=1, help="late joiners arriving at once, with --replay (1)"
    )
    parser.add_argument(
        "--idle-sample",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds to measure Redis's idle CPU before the window, to report its CPU per "
        "event less that (1; 0: none)",
    )
    parser.add_argument(
        "--server-pid",
        type=int,
        action="append",
        metavar="PID",
        help="a front-end process on this machine, for its CPU and RSS (repeatable)",
    )
    parser.add_argument(
        "--redis-pid",
        type=int,
        action="append",
        metavar="PID",
        help="a Redis process on this machine, for its writes per event (repeatable)",
    )
    parser.add_argument(
        "--read",
        choices=READS,
        default="sse",
        help="how viewers read: the SSE route (sse, the default), or each stream as a Durable "
        "Stream, GET /v1/stream/{id}?offset=-1&live=sse (ds-sse: each message one delivery)",
    )
    parser.add_argument("--token", help="viewer token (needed when the server has a secret)")
    _watch_arguments(parser)


def _watch_arguments(parser: argparse.ArgumentParser) -> None:
    """What a run measures besides its figures, and how a person follows it."""
    parser.add_argument(
        "--latency-samplers",
        type=int,
        default=LATENCY_SAMPLERS,
        metavar="N",
        help=f"viewers that record every latency, spread evenly ({LATENCY_SAMPLERS})",
    )
    parser.add_argument(
        "--kill-pid",
        type=int,
        metavar="PID",
        help="kill -9 this front-end in the window (--kill-after): its viewers reconnect with "
        "Last-Event-ID; reports how soon each was back, and every viewer had the next event",
    )
    parser.add_argument(
        "--kill-after",
        type=float,
        default=None,
        metavar="S",
        help="seconds into the window for --kill-pid (a third of --duration)",
    )
    parser.add_argument(
        "--progress",
        type=float,
        default=5.0,
        metavar="S",
        help="a progress line on stderr every S seconds: viewers connected, events "
        "delivered, the front-ends' memory (5; 0: none)",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE",
        help="draw the run into this PNG (matplotlib, a dev extra): deliveries/s and latency "
        "over time, the latency distribution, each front-end's memory",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def main(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(run_bench(args))
    except (BenchError, OSError, TimeoutError) as exc:
        print(f"bench: {exc!r}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render(result))
    if args.plot:
        from broadcaster.bench.plot import draw

        draw(result, args.plot)
        _say(f"drawn into {args.plot}")
    bad = (
        result["lost"] or result["duplicated"] or result["quiet_lost"] or result["quiet_duplicated"]
    )
    if result["kill"] is not None:
        bad = bad or result["kill"]["not_resumed"] or result["kill"]["without_next_event"]
    if result["replay"] is not None:
        bad = bad or result["replay"]["lost"] or result["replay"]["duplicated"]
    return 1 if bad else 0
