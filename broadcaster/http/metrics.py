"""Prometheus metrics of a front-end, in a registry of its own (several apps in one
process, as in tests, do not collide). The fan-out engine counts into the same object."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, GCCollector, Histogram


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
        self.connections = Gauge(
            "broadcaster_sse_connections", "Open SSE responses on this front-end", registry=r
        )
        self.streams = Gauge(
            "broadcaster_streams_watched", "Streams with at least one viewer here", registry=r
        )
        self.appended = Counter(
            "broadcaster_events_appended_total",
            "Events appended through this front-end (publish and cancel)",
            registry=r,
        )
        self.delivered = Counter(
            "broadcaster_events_delivered_total",
            "Live events handed to viewers (one per viewer per event)",
            registry=r,
        )
        self.replayed = Counter(
            "broadcaster_events_replayed_total",
            "Events read from Redis for one viewer (late join, catch-up, gap)",
            registry=r,
        )
        self.folded = Counter(
            "broadcaster_events_folded_total",
            "Delta events folded away by compact replays (?compact=1, the chat routes)",
            registry=r,
        )
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
        # python_gc_*: collections per generation, so their pauses can be told from load.
        GCCollector(registry=r)
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
