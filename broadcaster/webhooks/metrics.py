"""The deliverer's Prometheus metrics, in the registry it is given: a front-end's own
(``/metrics``), or the standalone deliverer's (``BROADCASTER_WEBHOOK_METRICS_PORT``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

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
        for reason in FAILURE_REASONS:
            self.failures.labels(reason)
