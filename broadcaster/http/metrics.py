"""Prometheus metrics of a front-end, in a registry of its own (several apps in one
process, as in tests, do not collide). The fan-out engine counts into the same object."""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, GCCollector, Histogram

from broadcaster.core import contain

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

    def __init__(self) -> None:
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
        self.occupied = c(
            "broadcaster_streams_occupied_total",
            "Streams that got their first viewer (on any front-end), seen by this one",
        )
        self.vacated = c(
            "broadcaster_streams_vacated_total",
            "Streams that lost their last viewer (on any front-end), seen by this one",
        )
        self.cut_off = c(
            "broadcaster_slow_viewers_cut_off_total",
            "Viewers disconnected because their socket accepted nothing",
        )
        self.redis_read = Histogram(
            "broadcaster_redis_read_seconds",
            "Latency of a replay page read (XRANGE)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.generations_queued = Gauge(
            "broadcaster_generations_queued",
            "Generations in the job queue, queued or running (read at scrape)",
            registry=r,
        )

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
                "(%d objects collected; %d frozen)",
                generation,
                took * 1000,
                int(info.get("collected", 0)),
                gc.get_freeze_count(),
            )
