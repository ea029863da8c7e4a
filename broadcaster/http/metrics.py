"""Prometheus metrics of a front-end, in a registry of its own (several apps in one
process, as in tests, do not collide). The fan-out engine counts into the same object.

The latency histograms share ``LATENCY_BUCKETS`` (a few milliseconds to ten minutes) with
the worker's and the deliverer's, so their percentiles compare. Those that subtract a
time another host took (an append's, by the Redis server's clock) from this host's clock
carry the skew between the two clocks: keep the hosts on NTP (a skew of a few
milliseconds is the lowest bucket); a negative difference is counted as 0.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, GCCollector, Histogram

from broadcaster.core import contain
from broadcaster.core.events import USAGE_KINDS
from broadcaster.generations.jobs import JobQueue, oldest_untaken_age
from broadcaster.generations.ledger import Settled
from broadcaster.viewers.proxies import UNTRUSTED
from broadcaster.webhooks.metrics import LATENCY_BUCKETS

log = logging.getLogger("broadcaster.gc")

GC_PAUSE_LOGGED = 0.05
"""A collection at least this long (seconds) is logged: every viewer of the process
waited that long for its next frame."""


class FrontendMetrics:
    def presence_changed(self, old: int, new: int) -> None:
        """A stream's viewer total changed by this front-end's write."""
        if old == 0 and new > 0:
            self.occupied.inc()
        elif old > 0 and new == 0:
            self.vacated.inc()

    def __init__(self, max_connections: int | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry

        def c(name: str, doc: str) -> Counter:
            return Counter(name, doc, registry=r)

        def g(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, registry=r)

        self.connections = g("broadcaster_sse_connections", "Open SSE responses on this front-end")
        self.streams = g("broadcaster_streams_watched", "Streams with at least one viewer here")
        self.appended = c(
            "broadcaster_events_appended_total",
            "Events appended through this front-end (publish and cancel)",
        )
        self.delivered = c(
            "broadcaster_events_delivered_total",
            "Live events handed to viewers (one per viewer per event)",
        )
        self._errors(r)
        self.replayed = c(
            "broadcaster_events_replayed_total",
            "Events read from Redis for one viewer (late join, catch-up, gap)",
        )
        self.resumed_from_memory = c(
            "broadcaster_resumes_from_memory_total",
            "Resumes (Last-Event-ID) of a stream watched here, served with no read of Redis",
        )
        self.folded = c(
            "broadcaster_events_folded_total",
            "Delta events folded away by compact replays (?compact=1, the chat routes)",
        )
        self._process(r)
        self._viewers(r)
        self.redis_read = Histogram(
            "broadcaster_redis_read_seconds",
            "Latency of a Redis read viewers wait for: a replay page (XRANGE), or the "
            "state of the streams a herd asks for (one pipelined round trip)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.generations_queued = Gauge(
            "broadcaster_generations_queued",
            "Generations in the job queue, queued or running (read at scrape)",
            registry=r,
        )
        self._latencies(r)
        self._deployment(r, max_connections)
        self._usage(r)

    def _viewers(self, r: CollectorRegistry) -> None:
        """Streams that got or lost viewers, and viewers cut off."""
        self.occupied = Counter(
            "broadcaster_streams_occupied_total",
            "Streams that got their first viewer (on any front-end), seen by this one",
            registry=r,
        )
        self.vacated = Counter(
            "broadcaster_streams_vacated_total",
            "Streams that lost their last viewer (on any front-end), seen by this one",
            registry=r,
        )
        self.cut_off = Counter(
            "broadcaster_slow_viewers_cut_off_total",
            "Viewers disconnected because their socket accepted nothing",
            registry=r,
        )
        self.viewers_refused = Counter(
            "broadcaster_viewers_refused_total",
            "Viewers' requests refused, by reason: the error code (unauthorized, forbidden, "
            "bad_resume_point, too_many_connections, not_found...), or for a 503 busy the "
            "room that was wanting: connections, stream_viewers, admission_rate",
            ["reason"],
            registry=r,
        )
        for reason in ("connections", "stream_viewers", "admission_rate"):
            self.viewers_refused.labels(reason)
        self.waited_turn = Counter(
            "broadcaster_viewers_waited_turn_total",
            "New viewers that waited their turn at BROADCASTER_ADMIT_PER_SECOND (the loop "
            "was behind, or the gate is off) rather than admitted at once",
            registry=r,
        )

    def _usage(self, r: CollectorRegistry) -> None:
        self.tokens = Counter(
            "broadcaster_tokens_total",
            "Tokens of ended generations, by kind (input_tokens: all input, the cache's "
            "reads and writes included; reasoning_tokens: part of output_tokens), provider "
            "and model; each generation counted by the one front-end that settled it",
            ["kind", "provider", "model"],
            registry=r,
        )
        self._models: set[tuple[str, str]] = set()

    def usage_settled(self, settled: Settled) -> None:
        """A generation's usage, settled by this front-end (``generations/settling.py``).
        Beyond ``MAX_MODEL_LABELS`` models, a new one is counted as ``(other)``."""
        named = (settled.provider, settled.model)
        if named not in self._models and len(self._models) >= MAX_MODEL_LABELS:
            named = (settled.provider, "(other)")
        self._models.add(named)
        for kind, count in zip(USAGE_KINDS, settled.usage.counts(), strict=True):
            self.tokens.labels(kind, *named).inc(count)

    def _latencies(self, r: CollectorRegistry) -> None:
        self.append_to_write = Histogram(
            "broadcaster_append_to_write_seconds",
            "From an append (the Redis server's clock, published with its events) to the "
            "write of its events to this front-end's viewers' sockets (this host's clock): "
            "once per run of live events handed to the viewers of a stream, not per viewer",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.approval_wait = Histogram(
            "broadcaster_approval_wait_seconds",
            "From a tool approval's request to its decision, by decision: approved, denied "
            "(by a person), expired (denied by the sweep at its deadline)",
            ["decision"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        for decision in APPROVAL_DECISIONS:
            self.approval_wait.labels(decision)

    def appended_at(self, ms: bytes | int) -> None:
        """A run of events appended at ``ms`` (the Redis server's clock) was just written
        to its viewers."""
        if isinstance(ms, int) or ms.isdigit():  # else not an append's: not counted
            self.append_to_write.observe(max(0.0, time.time() - int(ms) / 1000))

    def approval_decided(self, asked_ms: object, decision: str) -> None:
        """A decision on an approval asked at ``asked_ms`` (the worker's clock; nothing
        is observed without it: a wait asked by an older worker)."""
        if isinstance(asked_ms, int) and decision in APPROVAL_DECISIONS:
            wait = max(0.0, time.time() - asked_ms / 1000)
            self.approval_wait.labels(decision).observe(wait)

    def _deployment(self, r: CollectorRegistry, max_connections: int | None) -> None:
        """What the alerts need that only Redis knows (read at scrape), and the limit."""
        self.queue_age = Gauge(
            "broadcaster_generations_queue_age_seconds",
            "Age of the oldest job no worker has taken yet, over every queue (0 when none; "
            "read at scrape)",
            registry=r,
        )
        self.provider_live = Gauge(
            "broadcaster_provider_live_workers",
            "1 while a live worker advertises the provider, 0 once none does, for every "
            "provider a worker ever served (read at scrape; forget one with "
            "`python -m broadcaster providers --forget`)",
            ["provider"],
            registry=r,
        )
        self.connection_limit = Gauge(
            "broadcaster_sse_connections_limit",
            "BROADCASTER_MAX_CONNECTIONS: open SSE responses beyond it are refused",
            registry=r,
        )
        if max_connections is not None:
            self.connection_limit.set(max_connections)

    async def read_queues(self, jobs: JobQueue) -> None:
        """The queue's age and the providers' workers, from Redis (four round trips, each
        a pipeline or one command)."""
        self.queue_age.set(await oldest_untaken_age(jobs))
        for provider, status in (await jobs.provider_status()).items():
            self.provider_live.labels(provider).set(1 if status["live_workers"] else 0)

    def _errors(self, r: CollectorRegistry) -> None:
        """Failures contained (``core/contain.py``): the fan-out's, here; the loops' and
        the malformed entries read, the process's (``contain.Counts``)."""
        self.delivery_errors = Counter(
            "broadcaster_delivery_errors_total",
            "Failures kept from the rest of the fan-out, by reason: viewer (a viewer's "
            "delivery raised; it was cut and resumes from its Last-Event-ID), message (a "
            "pub/sub message that could not be used as it came: its frames were no "
            "append's, and the log was read instead, or handling it raised)",
            ["reason"],
            registry=r,
        )
        for reason in ("viewer", "message"):
            self.delivery_errors.labels(reason)
        r.register(contain.Counts("broadcaster"))
        r.register(UNTRUSTED)  # forwarded headers not believed (viewers/proxies.py)

    def _process(self, r: CollectorRegistry) -> None:
        """The process's own: its tasks, and its garbage collections."""
        self.tasks = Gauge(
            "broadcaster_asyncio_tasks",
            "asyncio tasks alive in this process, at scrape time (a leak shows as growth)",
            registry=r,
        )
        self.gc_frozen = Gauge(
            "broadcaster_gc_frozen_objects",
            "Objects of start-up that full garbage collections skip (gc.freeze once serving)",
            registry=r,
        )
        GCCollector(registry=r)  # python_gc_*: collections per generation
        self.gc_pause = Histogram(
            "broadcaster_gc_pause_seconds",
            "Garbage collections, by generation, and how long each stalled the event loop",
            ["generation"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )


APPROVAL_DECISIONS = ("approved", "denied", "expired")

MAX_MODEL_LABELS = 100
"""Provider and model pairs ``broadcaster_tokens_total`` names apart, per process: a
label set per model that requests name must stay bounded."""


class GcPauses:
    """Times every garbage collection of the process (``gc.callbacks``) into
    ``broadcaster_gc_pause_seconds``, and logs the long ones: a full collection scans
    every tracked object, about 80 per open viewer, while no viewer gets a frame."""

    def __init__(self, metrics: FrontendMetrics) -> None:
        self._pauses = [metrics.gc_pause.labels(str(g)) for g in range(3)]
        self._started = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    async def __aenter__(self) -> GcPauses:  # among the lifespan's async resources
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self._pauses[generation].observe(took)
        if took >= GC_PAUSE_LOGGED:
            log.warning(
                "a generation-%d garbage collection stalled the event loop for %.0f ms "
                "(%d objects collected)",  # not the frozen count: that walks every one
                generation,
                took * 1000,
                int(info.get("collected", 0)),
            )
