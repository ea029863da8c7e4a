"""The comparison's scenarios: each a load for the bench (its arguments) and the targets
it runs on; the smoke run's, the full run's, the fleet's (100,000 viewers, run only when
named), and those with a driver of their own (tests/perf/durable.py's)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from broadcaster.auth import tokens
from tests.perf import durable
from tests.perf.targets import (
    BEFORE,
    BEFORE_DS,
    BEFORE_FLEET,
    CEILING_FLEET,
    DS,
    FLEET,
    FRONTENDS,
    HOLD_FLEET,
    LINGER0,
    MULTI,
    MUX,
    TARGETS,
)


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
    """The servers' environment, besides the usual (``targets._frontend_env``)."""
    custom: Custom | None = None
    """Not a bench run: a driver of its own (the Durable Streams long-poll, catch-up)."""
    follow: int = 50
    """Streams per connection for the ``project-mux`` target (``bench --follow``)."""
    kill: bool = False
    """``kill -9`` one of the target's front-end processes in the window (``--kill-pid``)."""
    by_name: bool = False
    """Run only when named (``--scenario``, or ``fleet`` for all of them): minutes each."""
    idle_commands: float = 0.0
    """Seconds over which Redis's commands are counted with the server started and no
    viewer yet (``rounds.idle_commands``): what an idle front-end asks of Redis. 0: not."""
    redis_first: bool = False
    """Redis runs at a higher priority than the front-ends and the bench (``nice -5``,
    where allowed): in a deployment it has a machine of its own, and here 16 busy
    processes of the bench and the front-ends otherwise starve it (the publisher's
    appends then wait seconds for it, and every delivery with them)."""
    fork: bool = False
    """The project's front-ends forked from a fork server that imported them
    (``tests/support/forkserver.py``), not new interpreters: the smoke runs', which measure
    nothing and would spend most of their CPU importing."""


SMOKE_SETTLE = ["--settle", "0.4"]
"""The smoke runs' wait for a quiet Redis before each window (``bench --settle``): their
figures are not measured, only their code paths run."""


def scenarios(smoke: bool) -> list[Scenario]:
    if smoke:
        return [
            replace(s, fork=True, bench_args=[*s.bench_args, *SMOKE_SETTLE] if s.bench_args else [])
            for s in _smoke()
        ]
    return [
        Scenario(
            "connect-10k",
            "10,000 idle viewers of one stream connecting at once to one process: connect "
            "time, front-end CPU per connect, memory per connection, idle Redis commands",
            [
                *("--viewers", "10000", "--rate", "1", "--duration", "2", "--procs", "2"),
                *("--deadline", "60", "--first-wait", "120", "--idle-sample", "1"),
            ],
            targets=("project", BEFORE, "ceiling"),
            idle_commands=12.0,
        ),
        *_token_scenarios(),
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
        *hold_scenarios(),
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


BENCH_SECRET = "bench-token-secret-0123456789abcdef0123456789"
"""Signs the token of the ``-token`` scenarios' viewers (their front-ends verify it)."""


def _token_scenarios() -> list[Scenario]:
    """connect-10k and one-1000 with every viewer holding a token (a day's, read on every
    stream, no subject): verified at connect, and an open response that ends with it
    (ARCHITECTURE.md, "The viewer's path"): what that costs at connect and per delivery."""
    token = tokens.mint_token(BENCH_SECRET, read=["*"], ttl_seconds=86000)
    env = {"BROADCASTER_TOKEN_SECRET": BENCH_SECRET}
    return [
        Scenario(
            "connect-10k-token",
            "connect-10k, each viewer with a token",
            [
                *("--viewers", "10000", "--rate", "1", "--duration", "2", "--procs", "2"),
                *("--deadline", "60", "--first-wait", "120", "--idle-sample", "1"),
                *("--token", token),
            ],
            targets=("project", BEFORE, "ceiling"),
            env=env,
            by_name=True,
        ),
        Scenario(
            "one-1000-token",
            "one-1000, each viewer with a token",
            [
                *("--viewers", "1000", "--rate", "1000", "--duration", "5"),
                *("--deadline", "20", "--token", token),
            ],
            targets=("project", BEFORE, "ceiling"),
            env=env,
            by_name=True,
        ),
    ]


def _smoke() -> list[Scenario]:
    """What ``--smoke`` runs: seconds each."""
    return [
        Scenario(
            "smoke-live",
            "20 viewers of one stream, 50 ev/s, 1 s",
            [
                *("--viewers", "20", "--rate", "50", "--duration", "1", "--procs", "1"),
                *("--idle-sample", "0.5"),
            ],
            idle_commands=0.5,
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
                # 1 s, as the full run: with 0.3 s, an append due every 0.2 s came late
                # once on a busy machine and a poll that should have been woken timed out.
                env={"BROADCASTER_DS_LONG_POLL_SECONDS": "1"},
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


HOLD_SIZES = {"50k": (50_000, FLEET), "250k": (250_000, HOLD_FLEET)}
"""Viewers, and the front-ends that hold them (8, or 16 for 250,000: ``HOLD_FLEET``)."""
HOLD_PER_STREAM = 100
"""Viewers per stream in the hold scenarios (2,500 streams at 250,000)."""
HOLD_RATE = 0.02
"""Events/s per stream there: one every 50 s (50 appends/s, 5,000 deliveries/s at
250,000). A viewer costs a write per event or per keepalive, whichever comes first, and
a write is most of what a delivery costs: with the usual 15 s keepalive, 250,000 viewers
are 16,700 writes/s however few the events, more than these two cores carry beside the
bench's own viewers (an event every 13.3 s, 18,750 deliveries/s offered, was delivered
at 7,000-12,000/s and fell behind). So the hold's keepalive is ``HOLD_KEEPALIVE``."""
HOLD_KEEPALIVE = 55.0
"""The hold's ``BROADCASTER_KEEPALIVE_SECONDS``: longer than the gap between two events,
so that what the front-ends write is the events."""
HOLD_SECONDS = 600.0
"""The hold's window (``compare --hold`` changes it)."""
FLEET_NAMES = {
    *(
        f"{n}-{what}"
        for n in FLEET_SIZES
        for what in ("1ev", "10ev", "streams", "kill", "kill-half")
    ),
    *(f"{size}-hold" for size in HOLD_SIZES),
}


def fleet_scenarios() -> list[Scenario]:
    """100,000 viewers on this machine, and each scenario the same at 10,000 beside it:
    one stream at 1 and at 10 events/s, 10 viewers per stream (10,000 streams at
    100,000) at ``FLEET_STREAM_RATE``, and that with one front-end process killed
    (``kill -9``) ``FLEET_KILL_AFTER`` s in (``_kills``). The viewer processes are as many
    as their open-file limit needs (``bench viewer_procs``), on loopback source addresses
    5,000 viewers each."""
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
        pace = ["--duration", "40", "--pipeline", "1", "--slot-ms", "5"]
        streams = ["--streams", str(n // FLEET_STREAMS), "--rate", str(FLEET_STREAM_RATE), *pace]
        half = ["--streams", str(n // FLEET_STREAMS), "--rate", str(FLEET_STREAM_RATE / 2), *pace]
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
        ]
        out += _kills(size, common, streams, half)
    return out


def _kills(size: str, common: list[str], streams: list[str], half: list[str]) -> list[Scenario]:
    """``{size}-kill``, the target's; and ``{size}-kill-half``, the same at half the rate:
    the storm on a machine whose front-ends are not behind before the kill."""
    about = (
        f"the same, one front-end process killed (kill -9) {FLEET_KILL_AFTER:g} s into "
        "the window: every viewer must come back and miss nothing",
        f"the same at {FLEET_STREAM_RATE / 2:g} ev/s per stream: the storm where the "
        "front-ends are not behind before the kill (not the target's figure)",
    )
    return [
        Scenario(
            f"{size}-{name}",
            said,
            [*common, *load, "--kill-after", str(FLEET_KILL_AFTER)],
            targets=(FLEET, BEFORE_FLEET),
            kill=True,
            by_name=True,
            redis_first=True,
        )
        for name, said, load in zip(("kill", "kill-half"), about, (streams, half), strict=True)
    ]


def hold_scenarios(seconds: float = HOLD_SECONDS) -> list[Scenario]:
    """Many viewers held for ``seconds`` with events flowing, over front-end processes
    sharing a port: every viewer connected, every event delivered once, what a viewer
    costs to hold (memory per connection) and each delivery (CPU). 50,000 for a first
    look, 250,000 for the figure."""
    out = []
    for size, (n, target) in HOLD_SIZES.items():
        out.append(
            Scenario(
                f"{size}-hold",
                f"{n:,} viewers, {HOLD_PER_STREAM} per stream, {HOLD_RATE:g} ev/s each, held "
                f"{seconds:g} s over {target.rsplit('x', 1)[1]} front-end processes",
                [
                    *("--viewers", str(n), "--procs", str(max(2, n // 25_000))),
                    *("--streams", str(n // HOLD_PER_STREAM), "--rate", str(HOLD_RATE)),
                    *("--duration", f"{seconds:g}", "--pipeline", "1", "--slot-ms", "5"),
                    *("--deadline", "120", "--first-wait", "600", "--progress", "30"),
                    *("--latency-samplers", str(max(200, n // 100)), "--idle-sample", "1"),
                ],
                targets=(target,),
                keepalive=HOLD_KEEPALIVE,
                by_name=True,
                redis_first=True,
            )
        )
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
