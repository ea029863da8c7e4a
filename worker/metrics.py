"""Prometheus metrics of a worker, in a registry of its own (served on
``WORKER_METRICS_PORT``).

The latency histograms are labelled by ``provider`` only: the request's provider
(``anthropic``, ``openai``; anything else is counted as ``other``), a handful of values
whatever the traffic. A model name is free text in a request (and a fine-tune or a date
suffix makes a new one), so it would make a new series for every name a client sends:
it is left out, as is the outcome (``worker_generations_finished_total`` counts those).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from broadcaster.core import contain
from broadcaster.generations.jobs import Job
from broadcaster.generations.request import PROVIDERS

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
"""Seconds, a few milliseconds to ten minutes, about three to a decade (the same in
every process's metrics, so their percentiles compare)."""

RATE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0,
                500.0, 1000.0, 2000.0)  # fmt: skip
"""Output tokens per second of a model call."""


def provider_label(provider: object, known: Collection[str] = PROVIDERS) -> str:
    """A bounded label value: a known provider's name (a built-in one, or an agent this
    worker serves), else ``other``."""
    return provider if isinstance(provider, str) and provider in known else "other"


class WorkerMetrics:
    def __init__(self, agents: Iterable[str] = ()) -> None:
        self.known = frozenset((*PROVIDERS, *agents))
        """The provider labels: the built-in ones and the agents served (``WORKER_AGENTS``,
        a bounded list the operator names)."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.running = Gauge("worker_generations_running", "Generations running", registry=r)
        self.finished = Counter(
            "worker_generations_finished_total",
            "Generations that left this worker, by outcome",
            ["outcome"],  # completed, failed, cancelled, handed_back, lost, waiting
            registry=r,
        )
        self.provider_errors = Counter(
            "worker_provider_errors_total",
            "Errors from the model provider, by kind",
            ["kind"],
            registry=r,
        )
        self.tokens = Counter(
            "worker_tokens_total", "Model tokens, by direction", ["direction"], registry=r
        )
        self.tool_calls = Counter(
            "worker_tool_calls_total",
            "Calls of the tools this worker runs, by tool and outcome",
            ["tool", "outcome"],  # output, error
            registry=r,
        )
        self.abandoned = Counter(
            "worker_generations_abandoned_total",
            "Generations cancelled because nobody watched them (abandon_after_seconds)",
            registry=r,
        )
        self.appended = Counter(
            "worker_events_appended_total", "Events appended by this worker", registry=r
        )
        r.register(contain.Counts("worker"))  # loops that raised, malformed entries read
        self._latencies(r)

    def _latencies(self, r: CollectorRegistry) -> None:
        def h(name: str, doc: str, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> Histogram:
            return Histogram(name, doc, ["provider"], buckets=buckets, registry=r)

        self.queue_wait = h(
            "worker_queue_wait_seconds",
            "From a job's enqueueing (its queue entry's id: the Redis server's clock) to its "
            "taking by this worker (this host's clock); jobs taken over from a lost worker "
            "are not counted",
        )
        self.first_token = h(
            "worker_time_to_first_token_seconds",
            "From a model call's request to its first output (text, reasoning or a tool "
            "call), per model call",
        )
        self.duration = h(
            "worker_generation_duration_seconds",
            "How long a generation ran on this worker (one attempt: from its start here to "
            "its end, its wait for a person, or its handing back)",
        )
        self.tokens_per_second = h(
            "worker_output_tokens_per_second",
            "Output tokens of a model call over its time after the first token",
            RATE_BUCKETS,
        )
        for provider in (*PROVIDERS, "other"):  # each series exists before its first sample
            for metric in (self.queue_wait, self.first_token, self.duration):
                metric.labels(provider)
            self.tokens_per_second.labels(provider)

    def generation_clock(self, provider: str) -> Callable[[], None]:
        """Started now; calling it observes the generation's duration."""
        started = time.monotonic()
        histogram = self.duration.labels(provider_label(provider, self.known))
        return lambda: histogram.observe(time.monotonic() - started)

    def taken(self, jobs: list[Job]) -> None:
        """Jobs just read from their queues: how long each waited there."""
        now_ms = time.time() * 1000
        for job in jobs:
            enqueued_ms = int(job.entry_id.partition(b"-")[0])
            wait = max(0.0, now_ms - enqueued_ms) / 1000
            self.queue_wait.labels(provider_label(job.provider, self.known)).observe(wait)


@dataclass(slots=True)
class CallTiming:
    """One model call's clock: ``output()`` at each output, ``done()`` at its end."""

    metrics: WorkerMetrics | None
    provider: str
    started: float = field(default_factory=time.monotonic)
    first: float | None = None

    def output(self) -> None:
        if self.first is None:
            self.first = time.monotonic()
            if self.metrics is not None:
                label = provider_label(self.provider, self.metrics.known)
                self.metrics.first_token.labels(label).observe(self.first - self.started)

    def done(self, output_tokens: int) -> None:
        """The call ended with ``output_tokens`` (its usage) after its first output."""
        if self.metrics is None or self.first is None or output_tokens <= 0:
            return
        took = time.monotonic() - self.first
        if took > 0:
            rate = output_tokens / took
            label = provider_label(self.provider, self.metrics.known)
            self.metrics.tokens_per_second.labels(label).observe(rate)
