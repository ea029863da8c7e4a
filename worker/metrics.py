"""Prometheus metrics of a worker, in a registry of its own (served on
``WORKER_METRICS_PORT``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from broadcaster.core import contain


class WorkerMetrics:
    def __init__(self) -> None:
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
