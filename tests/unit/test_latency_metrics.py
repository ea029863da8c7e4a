"""The latency histograms: what each observes, from which time, and how often; the
append-to-write one once per run of events whatever the number of viewers, nothing for a
message that carries no append time. Pure logic: no Redis, no server."""

from __future__ import annotations

import itertools
import time
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from broadcaster.core import sse
from broadcaster.core.eventlog import EventLog
from broadcaster.core.events import Event
from broadcaster.fanout.hub import Hub
from broadcaster.fanout.push import SingleResolver
from broadcaster.fanout.subscription import Run, Subscription, Topic
from broadcaster.generations.jobs import Job
from broadcaster.http import metrics as http_metrics
from broadcaster.http.metrics import FrontendMetrics
from broadcaster.webhooks import metrics as webhook_metrics
from broadcaster.webhooks.metrics import WebhookMetrics
from worker import metrics as worker_metrics
from worker.metrics import CallTiming, WorkerMetrics

pytestmark = pytest.mark.anyio


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def le(registry: CollectorRegistry, name: str, bound: str, **labels: str) -> float:
    return sample(registry, f"{name}_bucket", le=bound, **labels)


def test_every_process_shares_the_buckets_a_few_ms_to_minutes() -> None:
    buckets = webhook_metrics.LATENCY_BUCKETS
    assert buckets == worker_metrics.LATENCY_BUCKETS == http_metrics.LATENCY_BUCKETS
    assert 15 <= len(buckets) <= 20 and buckets[0] == 0.001 and buckets[-1] == 600
    assert list(buckets) == sorted(set(buckets))
    ratios = [b / a for a, b in itertools.pairwise(buckets)]
    assert max(ratios) <= 3.0, "no decade left with a single bucket"


# --- the fan-out: once per run --------------------------------------------------------


def run_of(first: int, last: int) -> Run:
    events = [Event(s, "data-n", b'{"i":%d}' % s, f"{s:08x}") for s in range(first, last + 1)]
    return first, last, b"".join(sse.encode(e) for e in events), False


def message(run: Run, at_ms: int | None) -> bytes:
    head = b"%d %d %08x -" % (run[0], run[1], run[1])
    return head + (b" %d" % at_ms if at_ms is not None else b"") + b"\n" + run[2]


async def test_append_to_write_is_observed_once_per_run_not_per_viewer() -> None:
    metrics = FrontendMetrics()
    redis = Redis()  # never connected
    hub = Hub(SingleResolver(redis), EventLog(redis), metrics=metrics)
    topic = Topic("s", b"s", 0, "")
    hub._topics["s"], hub._by_channel[b"s"], topic.watched = topic, topic, True
    written: list[bytes] = []
    for _ in range(50):
        sub = Subscription(16, topic)
        sub.park(lambda data: written.append(data) is None, 0.0)
        topic.subs.add(sub)
    name = "broadcaster_append_to_write_seconds"
    appended = int(time.time() * 1000) - 30  # 30 ms ago, by "Redis's" clock
    hub._on_message(b"s", message(run_of(1, 2), appended))
    hub._on_message(b"s", message(run_of(3, 3), appended + 5))  # same read: one run
    hub._on_read()
    assert len(written) == 50, "every viewer got the run"
    assert sample(metrics.registry, f"{name}_count") == 1, "one observation for the run"
    assert le(metrics.registry, name, "0.01") == 0 and le(metrics.registry, name, "1.0") == 1
    # A message with no time (another publisher, an older append script): delivered,
    # not observed; nor is one whose time is not a number.
    hub._on_message(b"s", message(run_of(4, 4), None))
    hub._on_read()
    hub._on_message(b"s", b"5 5 00000005 - soon\n" + run_of(5, 5)[2])
    hub._on_read()
    assert len(written) == 150 and sample(metrics.registry, f"{name}_count") == 1
    # A time ahead of this host's clock (skew) counts as 0, not as a negative wait.
    metrics.appended_at(str(int(time.time() * 1000) + 5000).encode())
    assert le(metrics.registry, name, "0.001") == 1


def test_an_approval_wait_is_observed_by_decision_when_its_asking_time_is_known() -> None:
    metrics = FrontendMetrics()
    name = "broadcaster_approval_wait_seconds"
    metrics.approval_decided(int(time.time() * 1000) - 90_000, "expired")
    metrics.approval_decided(None, "approved")  # asked by a worker that kept no time
    metrics.approval_decided(int(time.time() * 1000), "made-up")
    assert sample(metrics.registry, f"{name}_count", decision="expired") == 1
    assert le(metrics.registry, name, "60.0", decision="expired") == 0
    assert le(metrics.registry, name, "120.0", decision="expired") == 1
    assert sample(metrics.registry, f"{name}_count", decision="approved") == 0


def test_the_connection_limit_is_exported() -> None:
    metrics = FrontendMetrics(250)
    assert sample(metrics.registry, "broadcaster_sse_connections_limit") == 250


# --- webhooks --------------------------------------------------------------------------


def test_a_webhook_delay_counts_from_its_outbox_entry_time() -> None:
    registry = CollectorRegistry()
    metrics = WebhookMetrics(registry)
    entry_ms = int(time.time() * 1000) - 3_000
    metrics.delivered_now(f"msg_my_group_{entry_ms}-0")
    metrics.delivered_now("msg_not-an-entry-id")
    name = "broadcaster_webhook_delivery_delay_seconds"
    assert sample(registry, "broadcaster_webhook_deliveries_total") == 2
    assert sample(registry, f"{name}_count") == 1
    assert le(registry, name, "2.5") == 0 and le(registry, name, "5.0") == 1


# --- the worker ------------------------------------------------------------------------


def test_queue_wait_counts_from_the_entry_id_by_a_bounded_provider_label() -> None:
    metrics = WorkerMetrics()
    now_ms = int(time.time() * 1000)
    metrics.taken(
        [
            Job(f"{now_ms - 2_000}-0".encode(), "g1", "openai"),
            Job(f"{now_ms - 20}-3".encode(), "g2", "made-up"),
        ]
    )
    name = "worker_queue_wait_seconds"
    assert le(metrics.registry, name, "1.0", provider="openai") == 0
    assert le(metrics.registry, name, "2.5", provider="openai") == 1
    assert le(metrics.registry, name, "0.1", provider="other") == 1
    assert sample(metrics.registry, f"{name}_count", provider="made-up") == 0


def test_a_model_calls_first_token_and_rate_are_observed_once() -> None:
    metrics = WorkerMetrics()
    timing = CallTiming(metrics, "anthropic")
    timing.started -= 0.2  # the request went out 200 ms ago
    timing.output()
    timing.output()
    assert timing.first is not None
    timing.first -= 2.0  # the first output came 2 s before the end
    timing.done(100)
    r = metrics.registry
    assert sample(r, "worker_time_to_first_token_seconds_count", provider="anthropic") == 1
    assert le(r, "worker_time_to_first_token_seconds", "0.1", provider="anthropic") == 0
    assert le(r, "worker_time_to_first_token_seconds", "0.25", provider="anthropic") == 1
    assert le(r, "worker_output_tokens_per_second", "30.0", provider="anthropic") == 0
    assert le(r, "worker_output_tokens_per_second", "50.0", provider="anthropic") == 1
    silent = CallTiming(metrics, "anthropic")
    silent.done(0)  # no output: no rate
    assert sample(r, "worker_output_tokens_per_second_count", provider="anthropic") == 1


def test_a_generations_duration_is_observed_when_its_clock_is_called(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From the clock's start to its call, on a clock the test sets (a busy machine's
    scheduler once put more than a millisecond between two lines)."""
    now = [1000.0]
    clock = SimpleNamespace(monotonic=lambda: now[0], time=time.time)
    monkeypatch.setattr(worker_metrics, "time", clock)  # the module's, not every module's
    metrics = WorkerMetrics()
    ran = metrics.generation_clock("anthropic")
    now[0] += 0.0004
    ran()
    name = "worker_generation_duration_seconds"
    assert sample(metrics.registry, f"{name}_count", provider="anthropic") == 1
    assert sample(metrics.registry, f"{name}_sum", provider="anthropic") == pytest.approx(0.0004)
    assert le(metrics.registry, name, "0.001", provider="anthropic") == 1
