"""Scale-out, measured: 1, 2 and 4 front-end processes against one local Redis Cluster
(3 primaries), under the same load from ``python -m broadcaster bench``, side by side in
one run. Not part of the CI suite (about a minute); run it with

    .venv/bin/python -m tests.perf.scale_out [--viewers 1000] [--streams 25] [--rate 20]
        [--route rotate,stream]

For each ``--route`` (how the viewers are spread over the front-ends, as ``bench --route``:
``rotate`` puts every stream's viewers on every front-end, ``stream`` each stream's on one,
as a balancer hashing the stream id does) and each number of front-ends, it prints one
row: delivered events/s, latency, the front-ends subscribed to each stream's channel,
Redis commands and log reads (``XREAD``/``XRANGE``/``XREVRANGE``: a viewer's catch-up, a
gap filled) per published event, the front-ends' CPU per 100,000 deliveries and RSS per
viewer, and the Redis primaries' CPU per 100,000 published events (less their idle CPU);
then Redis memory per stream and per event, measured on the bench's streams
(``MEMORY USAGE``). docs/scaling.md reads them.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from broadcaster.core import keys
from tests.support.procs import ROOT, Proc, pinned, start_frontend, stop_all
from tests.support.topologies import LocalCluster, start_cluster


def bench(
    cluster: LocalCluster, frontends: list[Proc], args: argparse.Namespace, route: str
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "broadcaster", "bench", "--redis-url", cluster.url, "--json"]
    # The bench reads the primaries' CPU from INFO (microseconds, where /proc counts ticks
    # of 10 ms) and subtracts what they spend idle (cluster bus, cron) over its window.
    cmd += ["--route", route, "--idle-sample", "3"]
    for fe in frontends:
        cmd += ["--url", fe.url, "--server-pid", str(fe.pid)]
    for node in cluster.servers:
        cmd += ["--redis-pid", str(node.popen.pid)]
    cmd += ["--viewers", str(args.viewers), "--streams", str(args.streams)]
    cmd += ["--rate", str(args.rate), "--duration", str(args.duration)]
    cmd += ["--event-bytes", str(args.event_bytes), "--pipeline", str(args.pipeline)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode not in (0, 1) or not out.stdout.strip():
        raise RuntimeError(f"bench failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def memory(cluster: LocalCluster, result: dict[str, Any]) -> tuple[float, float]:
    """Bytes per stream (its three keys) and per event, averaged over the bench's streams."""
    total = events = 0
    with cluster.client() as c:
        for s in result["per_stream"]:
            sid = s["stream"]
            for key in keys.stream_keys(sid):
                total += int(c.memory_usage(key, samples=0) or 0)
            events += int(c.xlen(keys.log_key(sid)))
    streams = len(result["per_stream"])
    return total / streams, total / events


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.perf.scale_out")
    parser.add_argument("--frontends", default="1,2,4", help="front-end counts to compare")
    parser.add_argument("--viewers", type=int, default=1000)
    # With --route rotate the bench gives viewer i stream i % streams and front-end
    # i % frontends: an odd number of streams spreads every stream's viewers over all
    # front-ends (an even one would put each stream on fewer: --route stream says so).
    parser.add_argument("--streams", type=int, default=25)
    parser.add_argument(
        "--route",
        default="rotate,stream",
        help="how viewers are routed, comma-separated: rotate (every stream on every "
        "front-end), stream (each stream on one), random",
    )
    parser.add_argument("--rate", type=float, default=20, help="events/s per stream")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--event-bytes", type=int, default=200)
    parser.add_argument(
        "--pipeline",
        type=int,
        default=1,
        help="appends per round trip (1: one by one, spread in time, as workers append)",
    )
    parser.add_argument(
        "--pin-redis",
        action="store_true",
        help="the Redis nodes on CPU 0, the front-ends and the bench on the other CPUs",
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.frontends.split(",")]
    routes = args.route.split(",")
    # SIGTERM runs the finally blocks too, so the processes started here are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows: list[tuple[str, int, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
        folder = Path(tmp)
        with pinned(args.pin_redis):
            cluster = start_cluster(folder / "cluster", primaries=3, replicas=0)
        try:
            for route in routes:
                for n in counts:
                    rows.append((route, n, one_deployment(cluster, folder, n, route, args)))
            per_stream, per_event = memory(cluster, rows[-1][2])
        finally:
            cluster.stop()
    print(render(rows, args, per_stream, per_event))


def one_deployment(
    cluster: LocalCluster, folder: Path, n: int, route: str, args: argparse.Namespace
) -> dict[str, Any]:
    """``n`` front-ends, one bench run: the bench's result."""
    frontends: list[Proc] = []
    try:
        for i in range(n):
            frontends.append(
                start_frontend(
                    cluster.seed,
                    folder,
                    f"fe-{route}-{n}-{i}",
                    {"REDIS_CLUSTER": "true", "BROADCASTER_MAX_CONNECTIONS_PER_ADDRESS": "0"},
                )
            )
        try:
            result = bench(cluster, frontends, args, route)
        except RuntimeError:
            for fe in frontends:
                print(fe.log()[-3000:], file=sys.stderr)
            raise
        print(f"{route}, {n} front-end(s): {json.dumps(result)}", file=sys.stderr)
        return result
    finally:
        stop_all(frontends)


def render(
    rows: list[tuple[str, int, dict[str, Any]]],
    args: argparse.Namespace,
    per_stream: float,
    per_event: float,
) -> str:
    lines = [
        f"load: {args.viewers} viewers on {args.streams} streams, {args.rate:g} events/s per "
        f"stream, {args.event_bytes}-byte events, {args.duration:g} s, {args.pipeline} "
        "append(s) per round trip; Redis Cluster of 3 primaries on this machine",
        "",
        "| route | front-ends | delivered events/s | p50 ms | p99 ms | lost | dup "
        "| subscribers/stream | Redis cmds/event "
        "| log reads/event | front-end CPU s/100k deliveries | RSS KB/viewer "
        "| Redis CPU µs/event | Redis writes/event | Redis bytes out/event |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- |",
    ]
    for route, n, r in rows:
        lat = r["latency_ms"]
        lines.append(
            f"| {route} | {n} | {r['delivered_events_per_s']:,.0f} | {lat['p50']:.1f} "
            f"| {lat['p99']:.1f} | {r['lost']} | {r['duplicated']} "
            f"| {r['subscribers_per_stream']:.2f} "
            f"| {r['redis_commands_per_event']:.2f} "
            f"| {r['redis_read_commands_per_event']:.3f} | {r['server_cpu_s_per_100k']:.2f} "
            f"| {r['server_rss_kb_per_connection']:.1f} | {r['redis_busy_us_per_event']:.1f} "
            f"| {r['redis_writes_per_event']:.2f} | {r['redis_bytes_out_per_event']:.0f} |"
        )
    lines.append("")
    for route, n, r in rows:
        commands = ", ".join(
            f"{k} {v / r['events_published']:.2f}" for k, v in r["redis_commands"].items()
        )
        lines.append(f"Redis commands per published event, {route}, {n} front-end(s): {commands}")
    lines += [
        "",
        f"Redis memory: {per_stream:,.0f} bytes per stream of "
        f"{int(args.rate * args.duration) + 2} events, {per_event:,.0f} bytes per event "
        f"(events of about {args.event_bytes} bytes)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
