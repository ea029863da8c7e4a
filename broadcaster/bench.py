"""``python -m broadcaster bench``: load-test a running deployment.

It does not start servers. It publishes to ``--redis-url`` with ``Publisher`` and opens
``--viewers`` SSE viewers, spread over ``--streams`` streams and over the ``--url``
front-ends, through real sockets with a lean asyncio HTTP/1.1 client (no httpx in the hot
path). Each event carries its publish time (``"t": time.time_ns()``), so every delivery
gives a publish-to-viewer latency. Each stream is created with one ``data-bench-start``
event (seq 1) before the viewers connect, then gets ``--rate`` events/s for
``--duration`` seconds, then ``finish``; every viewer must see ids 1..N once each.

Reported: deliveries/s, latency p50/p99/max, lost and duplicated events, the CPU of this
process per 100,000 deliveries, and with ``--server-pid`` (front-ends on this machine)
their CPU per 100,000 deliveries and RSS per open connection, Redis commands per
published event (INFO commandstats deltas; the bench's own INFO/CONFIG excluded, its
publishes included), and with ``--replay N`` the time a late joiner takes to read an
N-event stream that has ended.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis, RedisCluster

from broadcaster import connection
from broadcaster.publisher import Publisher
from broadcaster.settings import RedisSettings

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Commands the bench itself sends for its measurements, not part of the fan-out cost.
OWN_COMMANDS = {"info"}
# Commands that read a stream: what the front-ends cost Redis, apart from the publishing.
READ_COMMANDS = ("xread", "xrange", "xrevrange", "xreadgroup")


class BenchError(RuntimeError):
    pass


@dataclass
class Viewer:
    """One SSE connection: counts frames, checks ids, collects latencies."""

    host: str
    port: int
    path: str
    token: str | None
    record_latency: bool = True
    last_id: int = 0
    frames: int = 0
    lost: int = 0
    duplicated: int = 0
    done: bool = False
    latencies_ns: list[int] = field(default_factory=list)
    first_event: asyncio.Event = field(default_factory=asyncio.Event)
    last_rx_ns: int = 0

    def _frame(self, frame: bytes, now_ns: int) -> None:
        if frame.startswith(b"id: "):
            nl = frame.find(b"\n")
            eid = int(frame[4:nl].split(b".", 1)[0])
            self.frames += 1
            self.last_rx_ns = now_ns
            if eid == self.last_id + 1:
                self.last_id = eid
            elif eid <= self.last_id:
                self.duplicated += 1
            else:
                self.lost += eid - self.last_id - 1
                self.last_id = eid
            if eid == 1:
                self.first_event.set()
            elif self.record_latency:
                i = frame.find(b'"t":', nl)
                if i >= 0:
                    j = i + 4
                    k = j
                    while k < len(frame) and 48 <= frame[k] <= 57:
                        k += 1
                    if k > j:
                        self.latencies_ns.append(now_ns - int(frame[j:k]))
        elif frame.startswith(b"data: [DONE]"):
            self.done = True

    def _feed(self, buf: bytearray, data: bytes) -> None:
        buf += data
        now = time.time_ns()
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            self._frame(bytes(buf[start:end]), now)
            start = end + 2
        if start:
            del buf[:start]

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            auth = f"Authorization: Bearer {self.token}\r\n" if self.token else ""
            writer.write(
                (
                    f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                    f"Accept: text/event-stream\r\n{auth}\r\n"
                ).encode()
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split()[1])
            if status != 200:
                raise BenchError(f"GET {self.path}: HTTP {status}")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (h.partition(":") for h in header_lines if h)
            }
            buf = bytearray()
            if headers.get("transfer-encoding", "").lower() == "chunked":
                while not self.done:
                    size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                    if size == 0:
                        break
                    chunk = await reader.readexactly(size + 2)
                    self._feed(buf, chunk[:-2])
            else:
                while not self.done:
                    data = await reader.read(65536)
                    if not data:
                        break
                    self._feed(buf, data)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


# --- measurements of other processes ---


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after the ")": state is field 3, utime 14, stime 15 (1-based) -> indexes 11, 12
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def own_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def command_calls(redis: Redis) -> dict[str, int]:
    if isinstance(redis, RedisCluster):  # a redis+cluster:// URL: summed over the primaries
        per_node = await redis.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
        nodes: list[dict[str, Any]] = list(per_node.values())
    else:
        nodes = [await redis.info("commandstats")]
    calls: dict[str, int] = {}
    for stats in nodes:
        for key, value in stats.items():
            name = str(key).removeprefix("cmdstat_")
            if isinstance(value, dict):
                calls[name] = calls.get(name, 0) + int(value.get("calls", 0))
    return calls


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return math.nan
    idx = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[idx])


# --- the run ---


def _endpoint(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise BenchError(f"--url must be http://host[:port], got {url!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


async def _replay(
    pub: Publisher, endpoint: tuple[str, int, str], token: str | None, n: int, run: str
) -> dict[str, Any]:
    sid = f"bench-{run}-replay"
    batch = 500
    for start in range(0, n, batch):
        await pub.publish(
            sid, [{"type": "data-bench", "i": i} for i in range(start, min(n, start + batch))]
        )
    await pub.publish(sid, {"type": "finish"})
    host, port, prefix = endpoint
    viewer = Viewer(host, port, f"{prefix}/v1/streams/{sid}/events", token, record_latency=False)
    t0 = time.perf_counter()
    await viewer.run()
    seconds = time.perf_counter() - t0
    if not viewer.done:
        raise BenchError("replay: the late joiner did not reach [DONE]")
    return {
        "events": n + 1,
        "seconds": seconds,
        "events_per_s": (n + 1) / seconds if seconds > 0 else math.inf,
        "lost": viewer.lost + (n + 1 - viewer.last_id),
        "duplicated": viewer.duplicated,
    }


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    try:  # the same variables as the processes: REDIS_URL, REDIS_CLUSTER, REDIS_SENTINELS
        redis_url = args.redis_url or RedisSettings().engine_url()
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    if not redis_url:
        raise BenchError("--redis-url (or REDIS_URL) is required")
    endpoints = [_endpoint(u) for u in (args.url or ["http://127.0.0.1:8000"])]
    if args.viewers < 1 or args.streams < 1 or args.rate <= 0 or args.duration <= 0:
        raise BenchError("--viewers, --streams, --rate and --duration must be positive")
    pids: list[int] = args.server_pid or []
    run = uuid.uuid4().hex[:10]
    sids = [f"bench-{run}-{i}" for i in range(args.streams)]
    per_stream = max(1, round(args.rate * args.duration))  # data events per stream
    pad = "x" * max(0, args.event_bytes - 60)  # ~60 bytes of JSON besides the padding

    pub = Publisher.from_url(redis_url)
    stats_redis = connection.command_client(redis_url)
    try:
        for sid in sids:
            await pub.publish(sid, {"type": "data-bench-start", "t": time.time_ns()})

        rss_before = {pid: proc_rss_kb(pid) for pid in pids}
        viewers = []
        for i in range(args.viewers):
            host, port, prefix = endpoints[i % len(endpoints)]
            path = f"{prefix}/v1/streams/{sids[i % args.streams]}/events"
            viewers.append(Viewer(host, port, path, args.token))
        sem = asyncio.Semaphore(200)  # opening many sockets at once overflows backlogs

        async def open_one(v: Viewer) -> None:
            async with sem:
                task = asyncio.create_task(v.run())
                waiter = asyncio.create_task(v.first_event.wait())
                finished, _ = await asyncio.wait(
                    {task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED
                )
                if waiter not in finished:
                    waiter.cancel()
                    if task in finished:
                        task.result()  # raises the connection error
                    raise BenchError(f"viewer {v.path} got no first event in 30 s")
                tasks.append(task)

        tasks: list[asyncio.Task[None]] = []
        try:
            await asyncio.gather(*(open_one(v) for v in viewers))
            rss_after = {pid: proc_rss_kb(pid) for pid in pids}

            calls_before = await command_calls(stats_redis)
            cpu0 = own_cpu_seconds()
            srv0 = {pid: proc_cpu_seconds(pid) for pid in pids}
            t_start_ns = time.time_ns()
            t0 = time.perf_counter()
            for k in range(per_stream):
                delay = t0 + k / args.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = time.time_ns()
                await asyncio.gather(
                    *(pub.publish(sid, {"type": "data-bench", "t": now, "p": pad}) for sid in sids)
                )
            publish_seconds = time.perf_counter() - t0
            for sid in sids:
                await pub.publish(sid, {"type": "finish", "t": time.time_ns()})
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.duration + 60)
        finally:
            for t in tasks:
                t.cancel()
        cpu1 = own_cpu_seconds()
        srv1 = {pid: proc_cpu_seconds(pid) for pid in pids}
        calls_after = await command_calls(stats_redis)

        replay = None
        if args.replay > 0:
            replay = await _replay(pub, endpoints[0], args.token, args.replay, run)
    finally:
        await pub.aclose()
        await stats_redis.aclose()

    events_per_stream = per_stream + 2  # start + data + finish
    published = per_stream * len(sids) + len(sids)  # during the measured window
    lost = sum(v.lost + (events_per_stream - v.last_id) for v in viewers)
    duplicated = sum(v.duplicated for v in viewers)
    deliveries = sum(v.frames for v in viewers)
    measured = deliveries - len(viewers)  # all but the seq-1 replay each viewer got first
    end_ns = max(v.last_rx_ns for v in viewers)
    window = (end_ns - t_start_ns) / 1e9
    latencies = sorted(lat for v in viewers for lat in v.latencies_ns)
    delta = {
        name: calls_after.get(name, 0) - calls_before.get(name, 0)
        for name in set(calls_after) | set(calls_before)
        if name not in OWN_COMMANDS
    }
    delta = {k: v for k, v in sorted(delta.items()) if v}
    per_100k = 100_000 / measured if measured > 0 else math.nan
    return {
        "urls": [f"http://{h}:{p}{pre}" for h, p, pre in endpoints],
        "viewers": args.viewers,
        "streams": args.streams,
        "rate": args.rate,
        "duration": args.duration,
        "event_bytes": args.event_bytes,
        "per_stream": [
            {
                "stream": sid,
                "viewers": sum(1 for v in viewers if v.path.endswith(f"/{sid}/events")),
                "events": events_per_stream,
            }
            for sid in sids
        ],
        "events_published": published,
        "publish_rate": per_stream * len(sids) / publish_seconds,
        "deliveries": deliveries,
        "delivered_events_per_s": measured / window if window > 0 else math.nan,
        "latency_ms": {
            "p50": percentile(latencies, 0.50) / 1e6,
            "p99": percentile(latencies, 0.99) / 1e6,
            "max": percentile(latencies, 1.0) / 1e6,
        },
        "lost": lost,
        "duplicated": duplicated,
        "client_cpu_s_per_100k": (cpu1 - cpu0) * per_100k,
        "server_cpu_s_per_100k": (
            sum(srv1[p] - srv0[p] for p in pids) * per_100k if pids else None
        ),
        "server_rss_kb_per_connection": (
            sum(rss_after[p] - rss_before[p] for p in pids) / len(viewers) if pids else None
        ),
        "redis_commands_per_event": sum(delta.values()) / published,
        "redis_read_commands_per_event": sum(delta.get(c, 0) for c in READ_COMMANDS) / published,
        "redis_xread_per_event": delta.get("xread", 0) / published,
        "redis_commands": delta,
        "replay": replay,
    }


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.3f}{unit}" if abs(value) < 100 else f"{value:,.0f}{unit}"
    return f"{value:,}{unit}"


def render(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    rows = [
        ("front-ends", ", ".join(r["urls"])),
        (
            "load",
            f"{r['viewers']} viewers, {r['streams']} stream(s), {r['rate']} ev/s/stream, "
            f"{r['duration']} s, {r['event_bytes']} B",
        ),
        ("events published", f"{_fmt(r['events_published'])} ({_fmt(r['publish_rate'])} ev/s)"),
        ("deliveries", _fmt(r["deliveries"])),
        ("delivered events/s", _fmt(r["delivered_events_per_s"])),
        (
            "latency p50/p99/max",
            f"{_fmt(lat['p50'])} / {_fmt(lat['p99'])} / {_fmt(lat['max'])} ms",
        ),
        ("lost / duplicated", f"{r['lost']} / {r['duplicated']}"),
        ("bench CPU per 100k deliv.", _fmt(r["client_cpu_s_per_100k"], " s")),
        ("server CPU per 100k deliv.", _fmt(r["server_cpu_s_per_100k"], " s")),
        ("server RSS per connection", _fmt(r["server_rss_kb_per_connection"], " KiB")),
        ("Redis commands per event (all)", _fmt(r["redis_commands_per_event"])),
        ("Redis stream reads per event", _fmt(r["redis_read_commands_per_event"])),
        ("Redis XREAD per event", _fmt(r["redis_xread_per_event"])),
        ("Redis commands", ", ".join(f"{k}={v}" for k, v in r["redis_commands"].items())),
    ]
    if r["replay"] is not None:
        rp = r["replay"]
        rows.append(
            (
                "late-joiner replay",
                f"{rp['events']} events in {_fmt(rp['seconds'], ' s')} "
                f"({_fmt(rp['events_per_s'])} ev/s), lost {rp['lost']}, dup {rp['duplicated']}",
            )
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--event-bytes", type=int, default=100, help="event size (100)")
    parser.add_argument(
        "--replay", type=int, default=0, metavar="N", help="also time a late joiner of N events"
    )
    parser.add_argument(
        "--server-pid",
        type=int,
        action="append",
        metavar="PID",
        help="a front-end process on this machine, for its CPU and RSS (repeatable)",
    )
    parser.add_argument("--token", help="viewer token (needed when the server has a secret)")
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
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 else 1
