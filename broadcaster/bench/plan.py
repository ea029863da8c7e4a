"""What a run is asked (``BenchConfig``: the command line's options, typed) and what it
makes of that (``Plan``: the Redis, the front-ends, the streams, which front-end each viewer
uses), checked before anything starts (``make_plan``)."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from broadcaster.bench.viewers import READS, BenchError
from broadcaster.core.settings import RedisSettings

ROUTES = ("rotate", "random", "stream")
LATENCY_SAMPLERS = 50  # viewers that record every latency; the others only check ids
DEFAULT_URL = "http://127.0.0.1:8000"
EVENT_JSON_BYTES = 60
"""What an event's JSON holds besides its padding: ``--event-bytes`` less this is padded."""


@dataclass(frozen=True)
class BenchConfig:
    """One run's options (``bench --help`` says what each means): the command line makes
    it of its arguments, a comparison of the same arguments (``run.parse_config``)."""

    urls: tuple[str, ...]
    """``--url``: none for ``DEFAULT_URL``."""
    redis_url: str | None
    """``--redis-url``: none for the processes' variables (``REDIS_URL`` ...)."""
    viewers: int
    streams: int
    rate: float
    duration: float
    deadline: float
    idle: bool
    event_bytes: int
    quiet_streams: int
    follow: int
    join_during: bool
    first_wait: float
    pipeline: int
    slot_ms: float
    route: str
    procs: int
    replay: int
    joiners: int
    idle_sample: float
    settle: float
    """Seconds of a quiet Redis awaited before the window (``driver._settle``)."""
    server_pids: tuple[int, ...]
    redis_pids: tuple[int, ...]
    read: str
    token: str | None
    latency_samplers: int
    kill_pid: int | None
    kill_after: float
    """Seconds into the window for ``kill_pid`` (a third of ``duration`` unless given)."""
    progress: float


def _endpoint(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise BenchError(f"--url must be http://host[:port], got {url!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


@dataclass(frozen=True)
class Plan:
    """One run's streams and load, from its ``BenchConfig``."""

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


def make_plan(cfg: BenchConfig) -> Plan:
    """The run's plan; ``BenchError`` if an option is out of range."""
    try:  # the same variables as the processes: REDIS_URL, REDIS_CLUSTER, REDIS_SENTINELS
        redis_url = cfg.redis_url or RedisSettings().engine_url()
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    if not redis_url:
        raise BenchError("--redis-url (or REDIS_URL) is required")
    endpoints = [_endpoint(u) for u in (cfg.urls or [DEFAULT_URL])]
    if cfg.viewers < 1 or cfg.streams < 1 or cfg.rate <= 0 or cfg.duration <= 0:
        raise BenchError("--viewers, --streams, --rate and --duration must be positive")
    if cfg.procs < 1:
        raise BenchError("--procs must be positive")
    if cfg.join_during and not cfg.quiet_streams:
        raise BenchError("--join-during needs --quiet-streams")
    if cfg.pipeline < 1:
        raise BenchError("--pipeline must be at least 1")
    if cfg.route not in ROUTES:
        raise BenchError(f"--route must be one of {', '.join(ROUTES)}")
    if cfg.idle_sample < 0 or cfg.settle < 0:
        raise BenchError("--idle-sample and --settle must not be negative")
    if cfg.read not in READS:
        raise BenchError(f"--read must be one of {', '.join(READS)}")
    if cfg.follow < 1 or (cfg.follow > 1 and cfg.read != "sse"):
        raise BenchError("--follow must be positive, and reads with the SSE route only")
    if cfg.kill_pid and cfg.idle:
        raise BenchError("--kill-pid needs events to follow (not --idle)")
    if cfg.latency_samplers < 1:
        raise BenchError("--latency-samplers must be positive")
    run = uuid.uuid4().hex[:10]
    return Plan(
        redis_url=redis_url,
        endpoints=endpoints,
        pids=list(cfg.server_pids),
        redis_pids=list(cfg.redis_pids),
        run=run,
        sids=[f"bench-{run}-{i}" for i in range(cfg.streams)],
        quiet_sids=[f"bench-{run}-q{i}" for i in range(cfg.quiet_streams)],
        per_stream=0 if cfg.idle else max(1, round(cfg.rate * cfg.duration)),
        pad="x" * max(0, cfg.event_bytes - EVENT_JSON_BYTES),
        route=cfg.route,
        read="mux" if cfg.follow > 1 else cfg.read,
        viewers=cfg.viewers,
        follow=cfg.follow,
    )
