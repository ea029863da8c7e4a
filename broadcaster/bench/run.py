"""``python -m broadcaster bench``: load-test a running deployment (it starts no servers).

It publishes to ``--redis-url`` with ``Publisher`` and opens ``--viewers`` SSE viewers
over ``--streams`` streams, ``--url`` front-ends (``--route``: as a load balancer would
choose) and ``--procs`` processes of bare asyncio viewers (``viewers.py``). Each event
carries its publish time, so a delivery is a latency sample; every viewer must see ids
1..N once each. The options (docs/reference/cli.md) and what is reported
(``report.py``) are in docs/scaling.md and docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from broadcaster.bench.driver import JOIN_AFTER, run_bench
from broadcaster.bench.plan import LATENCY_SAMPLERS, ROUTES, BenchConfig
from broadcaster.bench.publishing import PIPELINE
from broadcaster.bench.report import render
from broadcaster.bench.timeline import say
from broadcaster.bench.viewers import READS, BenchError


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
        "--settle",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds Redis must stay quiet after the viewers connect before the window "
        "(2; 0: no wait): their joins' bookkeeping is not the events' cost",
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


def config(args: argparse.Namespace) -> BenchConfig:
    """The run's options, of the parsed arguments (``add_arguments``'s)."""
    return BenchConfig(
        urls=tuple(args.url or ()),
        redis_url=args.redis_url,
        viewers=args.viewers,
        streams=args.streams,
        rate=args.rate,
        duration=args.duration,
        deadline=args.deadline,
        idle=args.idle,
        event_bytes=args.event_bytes,
        quiet_streams=args.quiet_streams,
        follow=args.follow,
        join_during=args.join_during,
        first_wait=args.first_wait,
        pipeline=args.pipeline,
        slot_ms=args.slot_ms,
        route=args.route,
        procs=args.procs,
        replay=args.replay,
        joiners=args.joiners,
        idle_sample=args.idle_sample,
        settle=args.settle,
        server_pids=tuple(args.server_pid or ()),
        redis_pids=tuple(args.redis_pid or ()),
        read=args.read,
        token=args.token,
        latency_samplers=args.latency_samplers,
        kill_pid=args.kill_pid,
        kill_after=args.duration / 3 if args.kill_after is None else args.kill_after,
        progress=args.progress,
    )


def parse_config(argv: list[str]) -> BenchConfig:
    """The run's options, of ``bench``'s command-line arguments (a comparison's runs)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config(parser.parse_args(argv))


def main(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(run_bench(config(args)))
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
        say(f"drawn into {args.plot}")
    bad = (
        result["lost"] or result["duplicated"] or result["quiet_lost"] or result["quiet_duplicated"]
    )
    if result["kill"] is not None:
        bad = bad or result["kill"]["not_resumed"] or result["kill"]["without_next_event"]
    if result["replay"] is not None:
        bad = bad or result["replay"]["lost"] or result["replay"]["duplicated"]
    return 1 if bad else 0
