"""``python -m broadcaster bench``: load-test a running deployment.

It does not start servers. It publishes to ``--redis-url`` with ``Publisher`` and opens
``--viewers`` SSE viewers, spread over ``--streams`` streams, over the ``--url``
front-ends and over ``--procs`` viewer processes (see ``bench_viewers.py``: a viewer is
a bare asyncio protocol, so the load generator costs less per event than the server it
measures; the report says by how much). Each event carries its publish time
(``"t": time.time_ns()``), so a delivery gives a publish-to-viewer latency. Each stream
is created with one ``data-bench-start`` event (seq 1) before the viewers connect, then
gets ``--rate`` events/s for ``--duration`` seconds (none with ``--idle``: keepalives
only), then ``finish``; every viewer must see ids 1..N once each.

Reported: deliveries/s, latency p50/p99/max, lost and duplicated events, the CPU of the
bench per 100,000 deliveries, and with ``--server-pid`` (front-ends on this machine)
their CPU per 100,000 deliveries and RSS per open connection, Redis commands per
published event (INFO commandstats deltas; the bench's own INFO excluded, its publishes
included), and with ``--replay N`` the time ``--joiners`` late joiners take to read an
N-event stream that has ended.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import sys
import time
import uuid
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any, Protocol
from urllib.parse import urlsplit

from redis.asyncio import Redis, RedisCluster

from broadcaster import connection
from broadcaster.bench_viewers import (
    BenchError,
    GroupSpec,
    own_cpu_seconds,
    run_group,
)
from broadcaster.publisher import Publisher
from broadcaster.server import raise_nofile_limit
from broadcaster.settings import RedisSettings

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Commands the bench itself sends for its measurements, not part of the fan-out cost.
OWN_COMMANDS = {"info"}
# Commands that read a stream: what the front-ends cost Redis, apart from the publishing.
READ_COMMANDS = ("xread", "xrange", "xrevrange", "xreadgroup")
PUBLISHES_IN_FLIGHT = 16  # overlapping publish ticks (see _publish_on_schedule)
LATENCY_SAMPLERS = 50  # viewers that record every latency; the others only check ids


class EventSink(Protocol):
    """Where the bench publishes: ``Publisher`` (Redis), or a comparison's own relay."""

    async def publish(
        self, stream_id: str, events: dict[str, Any] | Sequence[dict[str, Any]]
    ) -> int: ...

    async def aclose(self) -> None: ...


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


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return math.nan
    idx = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[idx])


# --- viewer processes ---


class Groups:
    """The viewer processes of one phase: started together, awaited together."""

    def __init__(self, specs: list[GroupSpec]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        for spec in specs:
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=run_group, args=(spec, child), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    async def _recv(self, kind: str) -> list[Any]:
        out = []
        for conn in self._conns:
            try:
                msg = await asyncio.to_thread(conn.recv)
            except EOFError as exc:
                raise BenchError("a viewer process died") from exc
            if msg[0] == "error":
                raise BenchError(f"viewer process: {msg[1]}")
            if msg[0] != kind:
                raise BenchError(f"viewer process: expected {kind}, got {msg[0]}")
            out.append(msg[1:])
        return out

    async def ready(self) -> list[Any]:
        """Per process: (seconds to open, CPU seconds so far)."""
        return await self._recv("ready")

    async def done(self) -> list[dict[str, Any]]:
        return [m[0] for m in await self._recv("done")]

    def close(self) -> None:
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self._conns:
            conn.close()


def _split(targets: list[tuple[str, int, str]], procs: int, **kw: Any) -> list[GroupSpec]:
    """Contiguous shares, so each process's source addresses continue the global index."""
    procs = max(1, min(procs, len(targets)))
    size = math.ceil(len(targets) / procs)
    return [
        GroupSpec(targets=targets[i : i + size], first_index=i, **kw)
        for i in range(0, len(targets), size)
    ]


def _endpoint(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise BenchError(f"--url must be http://host[:port], got {url!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


# --- the run ---


async def _publish_all(sink: EventSink, sids: list[str], event: dict[str, Any]) -> None:
    await asyncio.gather(*(sink.publish(sid, event) for sid in sids))


async def _publish_on_schedule(
    sink: EventSink, sids: list[str], n: int, rate: float, t0: float, *, pad: str
) -> list[int]:
    """Tick k publishes one event to every stream at t0 + k/rate. Ticks overlap (up to
    ``PUBLISHES_IN_FLIGHT`` publishes in all) rather than wait for each other's round
    trips, so the rate holds on a loaded machine; Redis still numbers each stream's
    events in order. Returns each tick's publish time (ns from the event's ``t`` to the
    reply): bounds the part of the publish-to-viewer latency spent before Redis held the
    event, which is not the server's."""
    took: list[int] = []
    slots = asyncio.Semaphore(max(1, PUBLISHES_IN_FLIGHT // len(sids)))
    ticks: set[asyncio.Task[None]] = set()

    async def tick() -> None:
        try:
            t = time.time_ns()
            await _publish_all(sink, sids, {"type": "data-bench", "t": t, "p": pad})
            took.append(time.time_ns() - t)
        finally:
            slots.release()

    try:
        for k in range(n):
            delay = t0 + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            task = asyncio.create_task(tick())
            ticks.add(task)
            task.add_done_callback(ticks.discard)
        await asyncio.gather(*ticks)
    finally:
        for task in ticks:
            task.cancel()
    return sorted(took)


async def _replay(
    sink: EventSink, args: argparse.Namespace, endpoints: list[tuple[str, int, str]], run: str
) -> dict[str, Any]:
    """``--joiners`` viewers join at once a stream of ``--replay`` events that has ended."""
    sid = f"bench-{run}-replay"
    n = args.replay
    batch = 500
    for start in range(0, n, batch):
        await sink.publish(
            sid, [{"type": "data-bench", "i": i} for i in range(start, min(n, start + batch))]
        )
    await sink.publish(sid, {"type": "finish"})
    targets = [
        (h, p, f"{pre}/v1/streams/{sid}/events")
        for h, p, pre in (endpoints[i % len(endpoints)] for i in range(args.joiners))
    ]
    groups = Groups(
        _split(
            targets, args.procs, token=args.token, latency_every=0, wait_first=False, timeout=600
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


async def run_bench(args: argparse.Namespace, sink: EventSink | None = None) -> dict[str, Any]:
    """One bench run. ``sink`` replaces the Redis publisher (the comparison's ceiling)."""
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
    raise_nofile_limit()
    pids: list[int] = args.server_pid or []
    run = uuid.uuid4().hex[:10]
    sids = [f"bench-{run}-{i}" for i in range(args.streams)]
    per_stream = 0 if args.idle else max(1, round(args.rate * args.duration))
    pad = "x" * max(0, args.event_bytes - 60)  # ~60 bytes of JSON besides the padding

    pub: EventSink = sink if sink is not None else Publisher.from_url(redis_url)
    stats_redis = connection.command_client(redis_url)
    try:
        await _publish_all(pub, sids, {"type": "data-bench-start", "t": time.time_ns()})
        rss_before = {pid: proc_rss_kb(pid) for pid in pids}
        targets = []
        for i in range(args.viewers):
            host, port, prefix = endpoints[i % len(endpoints)]
            targets.append((host, port, f"{prefix}/v1/streams/{sids[i % args.streams]}/events"))
        every = max(1, args.viewers // LATENCY_SAMPLERS)
        groups = Groups(
            _split(
                targets,
                args.procs,
                token=args.token,
                latency_every=every,
                timeout=args.duration + args.deadline,
            )
        )
        try:
            readies = await groups.ready()
            open_seconds = max(r[0] for r in readies)
            rss_after = {pid: proc_rss_kb(pid) for pid in pids}
            calls_before = await command_calls(stats_redis)
            redis_cpu0 = await redis_cpu_seconds(stats_redis)
            cpu0 = own_cpu_seconds()
            srv0 = {pid: proc_cpu_seconds(pid) for pid in pids}
            t_start_ns = time.time_ns()
            t0 = time.perf_counter()
            if args.idle:
                await asyncio.sleep(args.duration)
            took = await _publish_on_schedule(pub, sids, per_stream, args.rate, t0, pad=pad)
            publish_seconds = time.perf_counter() - t0
            srv_idle = {pid: proc_cpu_seconds(pid) for pid in pids}
            await _publish_all(pub, sids, {"type": "finish", "t": time.time_ns()})
            results = await groups.done()
        finally:
            groups.close()
        cpu1 = own_cpu_seconds()
        srv1 = {pid: proc_cpu_seconds(pid) for pid in pids}
        calls_after = await command_calls(stats_redis)
        redis_cpu = await redis_cpu_seconds(stats_redis) - redis_cpu0
        replay = await _replay(pub, args, endpoints, run) if args.replay > 0 else None
    finally:
        await pub.aclose()
        await stats_redis.aclose()

    views = [v for r in results for v in r["viewers"]]
    events_per_stream = per_stream + 2  # start + data + finish
    published = per_stream * len(sids) + len(sids)  # during the measured window
    # A viewer the server ended early lost its tail; one still open at the deadline was
    # merely slower than the offered load (its tail is "undelivered", not lost).
    lost = sum(v[3] + (0 if v[7] else events_per_stream - v[2]) for v in views)
    undelivered = sum(events_per_stream - v[2] for v in views if v[7])
    duplicated = sum(v[4] for v in views)
    deliveries = sum(v[1] for v in views)
    measured = deliveries - len(views)  # all but the seq-1 replay each viewer got first
    end_ns = max(v[6] for v in views)
    window = (end_ns - t_start_ns) / 1e9
    latencies = sorted(lat for r in results for lat in r["latencies_ns"])
    delta = {
        name: calls_after.get(name, 0) - calls_before.get(name, 0)
        for name in set(calls_after) | set(calls_before)
        if name not in OWN_COMMANDS
    }
    delta = {k: v for k, v in sorted(delta.items()) if v}
    per_100k = 100_000 / measured if measured > 0 else math.nan
    viewer_cpu = sum(r["cpu"] for r in results) - sum(r[1] for r in readies)
    publisher_cpu = cpu1 - cpu0
    server_cpu = sum(srv1[p] - srv0[p] for p in pids) if pids else None
    return {
        "urls": [f"http://{h}:{p}{pre}" for h, p, pre in endpoints],
        "viewers": args.viewers,
        "streams": args.streams,
        "rate": 0 if args.idle else args.rate,
        "duration": args.duration,
        "event_bytes": args.event_bytes,
        "procs": len(readies),
        "open_seconds": open_seconds,
        "per_stream": [
            {
                "stream": sid,
                "viewers": sum(1 for _, _, path in targets if path.endswith(f"/{sid}/events")),
                "events": events_per_stream,
            }
            for sid in sids
        ],
        "events_published": published,
        "publish_rate": per_stream * len(sids) / publish_seconds,
        "deliveries": deliveries,
        "delivered_events_per_s": measured / window if window > 0 else math.nan,
        "window_s": window,
        "latency_ms": {
            "p50": percentile(latencies, 0.50) / 1e6,
            "p99": percentile(latencies, 0.99) / 1e6,
            "max": percentile(latencies, 1.0) / 1e6,
        },
        "latency_samples": len(latencies),
        "publish_ms": {
            "p50": percentile(took, 0.50) / 1e6,
            "p99": percentile(took, 0.99) / 1e6,
        },
        "lost": lost,
        "duplicated": duplicated,
        "timed_out_viewers": sum(1 for v in views if v[7]),
        "undelivered_at_deadline": undelivered,
        "client_cpu_s_per_100k": (viewer_cpu + publisher_cpu) * per_100k,
        "viewer_cpu_s_per_100k": viewer_cpu * per_100k,
        "publisher_cpu_s_per_100k": publisher_cpu * per_100k,
        "server_cpu_s": server_cpu,
        "server_idle_cpu_s": (
            sum(srv_idle[p] - srv0[p] for p in pids) if pids and args.idle else None
        ),
        "server_cpu_s_per_100k": server_cpu * per_100k if server_cpu is not None else None,
        "redis_cpu_s_per_100k": redis_cpu * per_100k,
        "server_rss_kb": sum(rss_after.values()) if pids else None,
        "server_rss_kb_per_connection": (
            sum(rss_after[p] - rss_before[p] for p in pids) / len(views) if pids else None
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
        if math.isnan(value):
            return "n/a"
        return f"{value:,.3f}{unit}" if abs(value) < 100 else f"{value:,.0f}{unit}"
    return f"{value:,}{unit}"


def render(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    srv, cli = r["server_cpu_s_per_100k"], r["client_cpu_s_per_100k"]
    rows = [
        ("front-ends", ", ".join(r["urls"])),
        (
            "load",
            f"{r['viewers']} viewers, {r['streams']} stream(s), {r['rate']} ev/s/stream, "
            f"{r['duration']} s, {r['event_bytes']} B, {r['procs']} viewer process(es)",
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
            "at the deadline",
            f"{r['timed_out_viewers']} viewers still behind, "
            f"{_fmt(r['undelivered_at_deadline'])} deliveries undelivered",
        ),
        (
            "bench CPU per 100k deliv.",
            f"{_fmt(cli, ' s')} (viewers {_fmt(r['viewer_cpu_s_per_100k'], ' s')}, "
            f"publisher {_fmt(r['publisher_cpu_s_per_100k'], ' s')})",
        ),
        ("server CPU per 100k deliv.", _fmt(srv, " s")),
        (
            "server CPU / bench CPU",
            _fmt(srv / cli) if srv is not None and cli and math.isfinite(cli) else "n/a",
        ),
        ("server CPU in window", _fmt(r["server_cpu_s"], " s")),
        ("Redis CPU per 100k deliv.", _fmt(r["redis_cpu_s_per_100k"], " s")),
        ("server RSS", _fmt(r["server_rss_kb"], " KiB")),
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
                f"{rp['joiners']} x {rp['events']} events in {_fmt(rp['seconds'], ' s')} "
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
    bad = result["lost"] or result["duplicated"]
    if result["replay"] is not None:
        bad = bad or result["replay"]["lost"] or result["replay"]["duplicated"]
    return 1 if bad else 0
