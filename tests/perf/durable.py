"""Durable Streams reads beside the project's own SSE route: what a long-poll costs, and a
10 MB catch-up. Run through compare.py, which starts the front-end (by pid) and Redis:

    python -m tests.perf.compare --scenario ds-long-poll --targets project,project-linger0
    python -m tests.perf.compare --scenario ds-catch-up --repeat 3

(One stream x 1,000 viewers over ``live=sse`` is a bench scenario, ``ds-sse-1000``: the
bench's viewers read with ``--read ds-sse``.)

**Long-poll** (``long_poll``): N readers, each on its own Durable Stream, each in a loop of
``GET ?offset=<o>&live=long-poll&cursor=<c>`` that follows ``Stream-Next-Offset`` and
``Stream-Cursor``, one connection each, while a publisher appends to every reader's stream
at a fixed rate with the same Lua script a POST runs, each stream's appends at its own
moment of the interval (independent producers), one at a time. Three cases:

- ``woken``: each poll waits at the tail and an append wakes it; the reader's next poll
  finds its stream still watched (the common live case), as long as the front-end keeps
  a stream watched after its last reader left (``BROADCASTER_TOPIC_LINGER_SECONDS``);
- ``timeout``: nothing is appended; each poll waits out the front-end's long-poll time
  (``BROADCASTER_DS_LONG_POLL_SECONDS``, 1 s here) and gets 204;
- ``cold``: as ``woken``, but after each answer the reader moves on to a stream of its own
  that nobody read before, so every poll finds a stream the front-end does not watch.

Per request: the front-end's CPU (``/proc/<pid>/stat``), Redis's commands (``INFO
commandstats`` deltas) and CPU, both less the publisher's appends: the commands and CPU
of an append are measured first on streams nobody reads, and the window's appends (taken
between whole ticks, so the count is exact) times that is subtracted. ``calls`` are what
the front-end sent (scripts, ``SUBSCRIBE``, ``UNSUBSCRIBE``); ``cmds`` also count the
commands the read script runs inside Redis.

**Catch-up** (``catch_up``): 10 MB written beforehand, then read from the start by 1
reader and by 20 at once: a Durable Stream of 10,000 JSON messages of 1 KiB, one of 160
binary chunks of 64 KiB, and a job feed of 10,000 events of 1 KiB (the same JSON read
three ways: Durable Streams pages, Durable Streams ``live=sse``, and the project's SSE
route, whose late joiners of an ended stream share one read of its history). Reported:
the time until every reader has all of it, MB/s of payload (the messages' bytes, the same
for every way of reading), pages per reader, the front-end's and Redis's CPU per MB read.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from redis.asyncio import Redis

from broadcaster.bench import probes
from broadcaster.bench.figures import percentile
from broadcaster.bench.viewers import DsViewer, Viewer, request_bytes
from broadcaster.clients.publisher import Publisher
from broadcaster.core import connection
from broadcaster.core.keys import DATA, MORE
from broadcaster.durable import protocol
from broadcaster.durable.storage import DurableLog
from tests.perf.keepalive_get import Http

ZERO = protocol.format_offset(0, "")
"""The offset of an empty stream's tail."""
CREATE_AT_ONCE = 200


class Target(Protocol):
    """A server compare.py started: its name, base URLs and processes."""

    name: str
    urls: list[str]

    @property
    def pids(self) -> list[int]: ...


# --- cost counters ---


@dataclass(frozen=True)
class Snapshot:
    at: float
    """``time.monotonic()``"""
    frontend_cpu: float
    redis_cpu: float
    calls: dict[str, int]


async def snapshot(stats: Redis, pids: Sequence[int]) -> Snapshot:
    calls = await probes.command_calls(stats)
    redis_cpu = await probes.redis_cpu_seconds(stats)
    cpu = sum(probes.proc_cpu_seconds(p) for p in pids)
    return Snapshot(time.monotonic(), cpu, redis_cpu, calls)


FRONTEND_CALLS = ("evalsha", "eval", "subscribe", "unsubscribe", "ssubscribe", "sunsubscribe")
"""What the front-end sends Redis for a long-poll (the rest run inside its scripts, or
are the pub/sub connection's probes)."""


def _pct(values: list[int], q: float) -> float:
    return percentile(sorted(values), q) / 1e6 if values else math.nan


def _json_message(i: int, size: int, *, event: bool = False) -> bytes:
    """A compact JSON object of exactly ``size`` bytes (an event's, with ``type``, for a
    feed)."""
    head = b'{"type":"data-x","i":%d,"p":"' % i if event else b'{"i":%d,"p":"' % i
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


async def _each(job: Callable[[str], Awaitable[None]], names: Sequence[str]) -> None:
    """``job`` for every name, ``CREATE_AT_ONCE`` at a time."""
    for i in range(0, len(names), CREATE_AT_ONCE):
        await asyncio.gather(*(job(n) for n in names[i : i + CREATE_AT_ONCE]))


# --- long-poll ---


LONG_POLL_CASES = ("woken", "timeout", "cold")


@dataclass(frozen=True)
class LongPollLoad:
    readers: int = 100
    """Readers, each on a stream of its own (a connection each)."""
    rate: float = 2.0
    """Appends per second to each reader's stream (``woken``, ``cold``)."""
    duration: float = 10.0
    """Seconds measured, after ``warmup``."""
    warmup: float = 6.0
    """Longer than the linger: a stream a cold poll watched is unwatched (one
    ``UNSUBSCRIBE``) that long after, so the window sees as many as it causes."""
    message_bytes: int = 100
    linger: float = 5.0
    """The front-end's ``BROADCASTER_TOPIC_LINGER_SECONDS``: between cases, the streams of
    the last one are left to be forgotten, so that their unsubscribes count in no case."""
    cases: tuple[str, ...] = LONG_POLL_CASES


@dataclass
class _Polls:
    done: list[tuple[float, int]] = field(default_factory=list)
    """(``time.monotonic()`` of each answer, messages it brought)"""
    status: dict[int, int] = field(default_factory=dict)
    latencies_ns: list[int] = field(default_factory=list)
    """From each message's append (its ``t``) to the answer that brought it."""
    errors: list[str] = field(default_factory=list)


async def _poller(  # noqa: PLR0917
    url: str, streams: list[str], current: list[str], i: int, polls: _Polls, stop: asyncio.Event
) -> None:
    """One reader: long-polls of ``streams[0]``, following its offset and cursor; with
    more than one stream, moves on to the next (cold) after each answer with data."""
    http = Http(url)
    at, offset, cursor = 0, ZERO, ""
    try:
        while not stop.is_set():
            path = f"/v1/stream/{streams[at]}?offset={offset}&live=long-poll"
            if cursor:
                path += f"&cursor={cursor}"
            status, headers, body = await http.get(path)
            now_ns = time.time_ns()
            polls.status[status] = polls.status.get(status, 0) + 1
            if status not in (200, 204):
                polls.errors.append(f"{status} {body[:200]!r}")
                return
            messages = json.loads(body) if status == 200 else []
            polls.done.append((time.monotonic(), len(messages)))
            polls.latencies_ns.extend(now_ns - int(m["t"]) for m in messages)
            offset = headers["stream-next-offset"]
            cursor = headers.get("stream-cursor", cursor)
            if messages and len(streams) > 1:
                at += 1
                if at == len(streams):
                    return
                current[i], offset = streams[at], ZERO
    finally:
        await http.aclose()


async def _create(durable: DurableLog, names: list[str], ct: str = "application/json") -> None:
    async def one(name: str) -> None:
        written = await durable.create(name, ct)
        if written.status != "CREATED":
            raise RuntimeError(f"creating {name}: {written.status}")

    await _each(one, names)


def _message(size: int) -> bytes:
    head = b'{"t":%d,"p":"' % time.time_ns()
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


async def _append(durable: DurableLog, name: str, size: int) -> None:
    """One message, as one POST appends it."""
    written = await durable.append(name, "application/json", [(DATA, _message(size))])
    if written.status != "OK":
        raise RuntimeError(f"appending to {name}: {written.status}")


@dataclass(frozen=True)
class _AppendCost:
    calls: dict[str, float]
    """Redis commands per append, by name (the script and what it runs)."""
    redis_cpu: float
    """Redis CPU seconds per append."""


async def _append_cost(
    durable: DurableLog, stats: Redis, load: LongPollLoad, run: str
) -> _AppendCost:
    """What an append costs Redis, measured on streams nobody reads: rounds of one append
    to each of ``load.readers`` streams, one after the other, as the window's publisher
    makes them."""
    names = [f"lp-{run}-cal{i}" for i in range(load.readers)]
    await _create(durable, names)
    await _append(durable, names[0], load.message_bytes)  # the script loaded
    before = await snapshot(stats, [])
    ticks = 10
    for _ in range(ticks):
        for name in names:
            await _append(durable, name, load.message_bytes)
    after = await snapshot(stats, [])
    n = ticks * len(names)
    delta = probes.command_delta(before.calls, after.calls)
    return _AppendCost(
        {k: v / n for k, v in delta.items()}, (after.redis_cpu - before.redis_cpu) / n
    )


async def _long_poll_case(  # noqa: PLR0917
    case: str,
    target: Target,
    durable: DurableLog,
    stats: Redis,
    load: LongPollLoad,
    cost: _AppendCost,
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    publishing = case != "timeout"
    per_reader = 1
    if case == "cold":  # a fresh stream after each answer, and a few to spare
        per_reader = math.ceil(load.rate * (load.warmup + load.duration)) + 5
    streams = [[f"lp-{run}-{i}-{k}" for k in range(per_reader)] for i in range(load.readers)]
    await _create(durable, [s for mine in streams for s in mine])
    current = [mine[0] for mine in streams]
    polls, stop = _Polls(), asyncio.Event()
    url = target.urls[0]
    readers = [
        asyncio.create_task(_poller(url, mine, current, i, polls, stop))
        for i, mine in enumerate(streams)
    ]
    try:
        if publishing:
            start, end = await _ticks(durable, stats, target, load, current)
            appends = round(load.duration * load.rate) * load.readers
        else:
            await asyncio.sleep(load.warmup)
            start = await snapshot(stats, target.pids)
            await asyncio.sleep(load.duration)
            end = await snapshot(stats, target.pids)
            appends = 0
    finally:
        stop.set()
        for task in readers:
            task.cancel()
        for out in await asyncio.gather(*readers, return_exceptions=True):
            if isinstance(out, Exception):  # the server went away, or answered nonsense
                polls.errors.append(repr(out))
    return _long_poll_row(case, target.name, polls, start, end, appends, cost)


async def _ticks(
    durable: DurableLog, stats: Redis, target: Target, load: LongPollLoad, current: list[str]
) -> tuple[Snapshot, Snapshot]:
    """Round k appends one message to every reader's current stream, reader i's at
    t0 + (k + i/readers)/rate: spread over the interval, as independent producers append,
    one at a time. The counters are read between rounds (no append in flight), at the
    window's ends."""
    t0 = time.monotonic()
    first = round(load.warmup * load.rate)
    last = first + round(load.duration * load.rate)
    start: Snapshot | None = None
    for k in range(last + 1):
        if k == first:
            start = await snapshot(stats, target.pids)
        if k == last:
            break
        for i in range(len(current)):
            delay = t0 + (k + i / len(current)) / load.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await _append(durable, current[i], load.message_bytes)
    assert start is not None
    return start, await snapshot(stats, target.pids)


def _long_poll_row(  # noqa: PLR0917
    case: str,
    target: str,
    polls: _Polls,
    start: Snapshot,
    end: Snapshot,
    appends: int,
    cost: _AppendCost,
) -> dict[str, Any]:
    answers = [(t, n) for t, n in polls.done if start.at <= t <= end.at]
    requests = len(answers)
    delta = probes.command_delta(start.calls, end.calls)
    readers_calls = {
        name: n - appends * cost.calls.get(name, 0.0) for name, n in sorted(delta.items())
    }
    per = 1 / requests if requests else math.nan
    redis_cpu = end.redis_cpu - start.redis_cpu - appends * cost.redis_cpu
    return {
        "target": target,
        "case": case,
        "requests": requests,
        "requests_per_s": requests / (end.at - start.at),
        "with_data": sum(1 for _, n in answers if n),
        "messages": sum(n for _, n in answers),
        "appends": appends,
        "frontend_cpu_us_per_request": (end.frontend_cpu - start.frontend_cpu) * 1e6 * per,
        "redis_cpu_us_per_request": redis_cpu * 1e6 * per,
        "redis_calls_per_request": sum(readers_calls.get(c, 0.0) for c in FRONTEND_CALLS) * per,
        "redis_commands_per_request": sum(readers_calls.values()) * per,
        "commands_per_request": {k: round(v * per, 3) for k, v in readers_calls.items() if v},
        "latency_ms": {
            "p50": _pct(polls.latencies_ns, 0.50),
            "p99": _pct(polls.latencies_ns, 0.99),
        },
        "status": polls.status,
        "errors": polls.errors[:5],
    }


async def long_poll(
    target: Target, redis: tuple[str, int], load: LongPollLoad
) -> list[dict[str, Any]]:
    """Every case of ``load`` against one front-end; a row each."""
    client = connection.command_client(redis[0])
    stats = connection.command_client(redis[0])
    durable = DurableLog(client)
    rows = []
    try:
        cost = await _append_cost(durable, stats, load, uuid.uuid4().hex[:8])
        for i, case in enumerate(load.cases):
            if i and load.linger > 0:
                await asyncio.sleep(load.linger + 1)  # the last case's streams forgotten
            try:
                rows.append(await _long_poll_case(case, target, durable, stats, load, cost))
            except (OSError, RuntimeError, asyncio.IncompleteReadError) as exc:
                rows.append({"target": target.name, "case": case, "error": repr(exc)})
    finally:
        await durable.aclose()
        await client.aclose()
        await stats.aclose()
    return rows


def long_poll_table(rows: list[dict[str, Any]]) -> list[str]:
    head = (
        f"{'target':15} {'case':8} {'requests':>8} {'req/s':>7} {'data':>5} "
        f"{'feCPU us/req':>12} {'redis us/req':>12} {'calls/req':>9} {'cmds/req':>8} "
        f"{'p50 ms':>7} {'p99 ms':>7}  commands per request"
    )
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['target']:15} {r['case']:8} ERROR {r['error']}")
            continue
        lat = r["latency_ms"]
        cmds = ", ".join(f"{k}={v:g}" for k, v in r["commands_per_request"].items() if v >= 0.01)
        data = r["with_data"] / r["requests"] if r["requests"] else math.nan
        lines.append(
            f"{r['target']:15} {r['case']:8} {r['requests']:>8,} {r['requests_per_s']:>7.1f} "
            f"{data:>5.2f} {r['frontend_cpu_us_per_request']:>12.0f} "
            f"{r['redis_cpu_us_per_request']:>12.1f} {r['redis_calls_per_request']:>9.2f} "
            f"{r['redis_commands_per_request']:>8.2f} {lat['p50']:>7.1f} {lat['p99']:>7.1f}  {cmds}"
            + (f"  ERRORS {r['errors']}" if r["errors"] else "")
        )
    return lines


def long_poll_summary(rounds: list[list[dict[str, Any]]]) -> list[str]:
    """Medians over rounds, per target and case."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rows in rounds:
        for r in rows:
            if "error" not in r:
                by.setdefault((r["target"], r["case"]), []).append(r)
    lines = []
    for (target, case), rs in by.items():
        fe = [r["frontend_cpu_us_per_request"] for r in rs]
        rc = [r["redis_cpu_us_per_request"] for r in rs]
        calls = [r["redis_calls_per_request"] for r in rs]
        cmds = [r["redis_commands_per_request"] for r in rs]
        p99 = [r["latency_ms"]["p99"] for r in rs]
        lines.append(
            f"{target:15} {case:8} feCPU {statistics.median(fe):.0f} us/req "
            f"({', '.join(f'{x:.0f}' for x in fe)}), Redis {statistics.median(rc):.1f} us/req, "
            f"{statistics.median(calls):.2f} calls and {statistics.median(cmds):.2f} commands "
            f"per request, p99 {statistics.median(p99):.1f} ms"
        )
    return lines


# --- catch-up ---


@dataclass(frozen=True)
class CatchUpLoad:
    messages: int = 10_000
    message_bytes: int = 1024
    chunks: int = 160
    chunk_bytes: int = 64 * 1024
    readers: tuple[int, ...] = (1, 20)
    batch: int = 100
    """Messages (events) per append, as a producer POSTs them."""


@dataclass(frozen=True)
class _Stream:
    kind: str
    """``json``, ``binary`` or ``feed``."""
    name: str
    payload: int
    """Bytes of its messages (chunks, events' data): what a reader must get."""
    messages: int
    """Messages a whole read brings (for a feed, its ``finish`` too)."""
    reads: tuple[str, ...]


async def _write_streams(redis_url: str, load: CatchUpLoad) -> list[_Stream]:
    run = uuid.uuid4().hex[:8]
    client = connection.command_client(redis_url)
    durable = DurableLog(client)
    try:
        js = f"cu-{run}-json"
        await _create(durable, [js])
        payload = 0
        for start in range(0, load.messages, load.batch):
            msgs = [_json_message(i, load.message_bytes) for i in range(start, start + load.batch)]
            payload += sum(len(m) for m in msgs)
            entries = [(MORE, m) for m in msgs[:-1]] + [(DATA, msgs[-1])]
            await durable.append(js, "application/json", entries)
        await durable.append(js, "", [], close=True)
        streams = [_Stream("json", js, payload, load.messages, ("ds-pages",))]
        binary = f"cu-{run}-binary"
        ct = "application/octet-stream"
        await _create(durable, [binary], ct)
        for _ in range(load.chunks):
            await durable.append(binary, ct, [(DATA, os.urandom(load.chunk_bytes))])
        await durable.append(binary, "", [], close=True)
        streams.append(
            _Stream("binary", binary, load.chunks * load.chunk_bytes, load.chunks, ("ds-pages",))
        )
    finally:
        await durable.aclose()
        await client.aclose()
    feed = f"cu-{run}-feed"
    payload = 0
    async with Publisher.from_url(redis_url) as pub:
        for start in range(0, load.messages, load.batch):
            events = [
                json.loads(_json_message(i, load.message_bytes, event=True))
                for i in range(start, start + load.batch)
            ]
            await pub.publish(feed, events)
            payload += load.batch * load.message_bytes
        await pub.publish(feed, {"type": "finish"})
    reads = ("ds-pages", "ds-sse", "sse-replay")
    streams.append(_Stream("feed", feed, payload, load.messages + 1, reads))
    return streams


@dataclass
class _Got:
    messages: int = 0
    body_bytes: int = 0
    pages: int = 0
    problems: list[str] = field(default_factory=list)


async def _read_pages(url: str, stream: _Stream, got: _Got) -> None:
    """Catch-up GETs from ``-1``, each from the last one's ``Stream-Next-Offset``, until
    one says it is up to date."""
    http = Http(url)
    mark = b'{"type":"' if stream.kind == "feed" else b'{"i":'
    offset = "-1"
    try:
        while True:
            status, headers, body = await http.get(f"/v1/stream/{stream.name}?offset={offset}")
            if status != 200:
                got.problems.append(f"{status} {body[:200]!r}")
                return
            got.pages += 1
            got.body_bytes += len(body)
            got.messages += len(body) if stream.kind == "binary" else body.count(mark)
            offset = headers["stream-next-offset"]
            if headers.get("stream-up-to-date") == "true":
                return
    finally:
        await http.aclose()


async def _read_sse(url: str, path: str, viewer: type[Viewer], got: _Got) -> None:
    """A whole SSE read with the bench's own viewer: to ``[DONE]``, or to ``streamClosed``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    v = viewer(request_bytes(host, port, path, None), record_latency=False)
    loop = asyncio.get_running_loop()
    await loop.create_connection(lambda: v, host, port)
    await asyncio.wait_for(v.closed, 300)
    got.messages += v.frames
    got.pages += 1
    if v.status != 200 or not v.done or v.lost or v.duplicated:
        got.problems.append(
            f"HTTP {v.status}, done {v.done}, lost {v.lost}, duplicated {v.duplicated}"
        )


def _reader(url: str, stream: _Stream, read: str, got: _Got) -> Awaitable[None]:
    if read == "ds-pages":
        return _read_pages(url, stream, got)
    if read == "ds-sse":
        return _read_sse(url, f"/v1/stream/{stream.name}?offset=-1&live=sse", DsViewer, got)
    return _read_sse(url, f"/v1/streams/{stream.name}/events", Viewer, got)


async def _catch_up_row(
    target: Target, stats: Redis, stream: _Stream, read: str, readers: int
) -> dict[str, Any]:
    gots = [_Got() for _ in range(readers)]
    url = target.urls[0]
    before = await snapshot(stats, target.pids)
    t0 = time.perf_counter()
    await asyncio.gather(*(_reader(url, stream, read, g) for g in gots))
    seconds = time.perf_counter() - t0
    after = await snapshot(stats, target.pids)
    mb = stream.payload * readers / 1e6
    problems = [p for g in gots for p in g.problems]
    want = stream.payload if stream.kind == "binary" else stream.messages
    short = [g.messages for g in gots if g.messages != want]
    if short:
        problems.append(f"{len(short)} reader(s) got {short[:3]} of {want}")
    fe_cpu = after.frontend_cpu - before.frontend_cpu
    return {
        "target": target.name,
        "stream": stream.kind,
        "read": read,
        "readers": readers,
        "seconds": seconds,
        "mb_per_s": mb / seconds,
        "payload_mb": stream.payload / 1e6,
        "pages_per_reader": statistics.mean(g.pages for g in gots) if read == "ds-pages" else None,
        "wire_mb": sum(g.body_bytes for g in gots) / 1e6 if read == "ds-pages" else None,
        "frontend_cpu_s": fe_cpu,
        "frontend_cpu_ms_per_mb": fe_cpu * 1e3 / mb,
        "redis_cpu_ms_per_mb": (after.redis_cpu - before.redis_cpu) * 1e3 / mb,
        "problems": problems[:5],
    }


async def catch_up(
    target: Target, redis: tuple[str, int], load: CatchUpLoad
) -> list[dict[str, Any]]:
    streams = await _write_streams(redis[0], load)
    stats = connection.command_client(redis[0])
    rows = []
    try:
        for stream in streams:
            for read in stream.reads:
                for readers in load.readers:
                    try:
                        rows.append(await _catch_up_row(target, stats, stream, read, readers))
                    except (OSError, RuntimeError, TimeoutError) as exc:
                        rows.append(
                            {
                                "target": target.name,
                                "stream": stream.kind,
                                "read": read,
                                "readers": readers,
                                "error": repr(exc),
                            }
                        )
    finally:
        await stats.aclose()
    return rows


def catch_up_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"{'target':10} {'stream':7} {'read':10} {'readers':>7} {'seconds':>8} {'MB/s':>7} "
        f"{'pages':>6} {'feCPU s':>7} {'feCPU ms/MB':>11} {'redis ms/MB':>11}  problems"
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"{r['target']:10} {r['stream']:7} {r['read']:10} {r['readers']:>7} "
                f"ERROR {r['error']}"
            )
            continue
        pages = r["pages_per_reader"]
        lines.append(
            f"{r['target']:10} {r['stream']:7} {r['read']:10} {r['readers']:>7} "
            f"{r['seconds']:>8.2f} {r['mb_per_s']:>7.1f} "
            f"{'-' if pages is None else f'{pages:.0f}':>6} {r['frontend_cpu_s']:>7.2f} "
            f"{r['frontend_cpu_ms_per_mb']:>11.1f} "
            f"{r['redis_cpu_ms_per_mb']:>11.1f}  {'; '.join(r['problems']) or '-'}"
        )
    lines += _catch_up_ratios(rows)
    return lines


def _catch_up_ratios(rows: list[dict[str, Any]]) -> list[str]:
    """The feed read as Durable Streams pages and ``live=sse``, against the SSE route, on
    the same server."""
    feed = {
        (r["target"], r["read"], r["readers"]): r
        for r in rows
        if "error" not in r and r["stream"] == "feed"
    }
    lines = []
    for (target, read, readers), r in feed.items():
        base = feed.get((target, "sse-replay", readers))
        if read == "sse-replay" or base is None:
            continue
        cpu, base_cpu = r["frontend_cpu_ms_per_mb"], base["frontend_cpu_ms_per_mb"]
        lines.append(
            f"{target}: feed, {readers} reader(s), {read} / sse-replay: time "
            f"{r['seconds'] / base['seconds']:.2f}x, front-end CPU per MB "
            + (f"{cpu / base_cpu:.2f}x" if base_cpu else "n/a (too little to measure)")
        )
    return lines


def catch_up_summary(rounds: list[list[dict[str, Any]]]) -> list[str]:
    by: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for rows in rounds:
        for r in rows:
            if "error" not in r:
                key = (r["target"], r["stream"], r["read"], r["readers"])
                by.setdefault(key, []).append(r)
    lines = []
    for (target, stream, read, readers), rs in by.items():
        secs = [r["seconds"] for r in rs]
        cpu = [r["frontend_cpu_ms_per_mb"] for r in rs]
        mbs = [r["mb_per_s"] for r in rs]
        redis = [r["redis_cpu_ms_per_mb"] for r in rs]
        lines.append(
            f"{target:10} {stream:7} {read:10} x{readers:<3} {statistics.median(secs):.2f} s "
            f"({', '.join(f'{x:.2f}' for x in secs)}), {statistics.median(mbs):.1f} MB/s, "
            f"CPU per MB: front-end {statistics.median(cpu):.1f} ms, Redis "
            f"{statistics.median(redis):.1f} ms"
        )
    return lines
