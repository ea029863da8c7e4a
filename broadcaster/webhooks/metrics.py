"""The deliverer's Prometheus metrics, in the registry it is given: a front-end's own
(``/metrics``), or the standalone deliverer's (``BROADCASTER_WEBHOOK_METRICS_PORT``)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
"""Seconds, a few milliseconds to ten minutes, about three to a decade: every latency
histogram's (the front-end's imports these; the worker's are the same numbers)."""

FAILURE_REASONS = (
    "timeout",
    "connect",
    "network",
    "http_3xx",
    "http_4xx",
    "http_410",
    "http_5xx",
    "no_url",
)


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.moved = Counter(
            "broadcaster_webhook_events_total",
            "Webhook events taken from the outboxes by this deliverer",
            registry=r,
        )
        self.attempts = Counter(
            "broadcaster_webhook_attempts_total", "Delivery attempts (HTTP POSTs)", registry=r
        )
        self.failures = Counter(
            "broadcaster_webhook_failures_total",
            "Failed attempts, by reason: " + ", ".join(FAILURE_REASONS),
            ["reason"],
            registry=r,
        )
        self.delivered = Counter(
            "broadcaster_webhook_deliveries_total",
            "Deliveries a receiver accepted (2xx)",
            registry=r,
        )
        self.dead = Counter(
            "broadcaster_webhook_dead_lettered_total",
            "Deliveries put on the dead-letter list (schedule exhausted, or 410 Gone)",
            registry=r,
        )
        self.pending = Gauge(
            "broadcaster_webhook_pending",
            "Deliveries not yet settled, deployment-wide (read by each deliverer)",
            registry=r,
        )
        self.lag = Gauge(
            "broadcaster_webhook_lag_seconds",
            "Age of the oldest delivery not yet settled (0 when there is none)",
            registry=r,
        )
        self.delay = Histogram(
            "broadcaster_webhook_delivery_delay_seconds",
            "From the event's entry in its outbox (the Redis server's clock, in the "
            "webhook-id) to the receiver's 2xx (this host's clock), retries included; a "
            "replayed dead letter counts from its first outbox time",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        for reason in FAILURE_REASONS:
            self.failures.labels(reason)

    def delivered_now(self, webhook_id: str) -> None:
        """A receiver accepted the delivery of ``webhook_id`` (``msg_<group>_<entry id>``,
        the outbox entry's id: the time it was written there)."""
        self.delivered.inc()
        entry_ms = webhook_id.rpartition("_")[2].partition("-")[0]
        if entry_ms.isdigit():
            self.delay.observe(max(0.0, time.time() - int(entry_ms) / 1000))
