"""The gauges the alerts read from Redis at scrape, on a real Redis of the test's own:
the age of the oldest job no worker has taken (before any worker made the queues'
group, after, and once every job is taken) and whether a live worker serves each
provider a worker ever served."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broadcaster.core import connection, keys
from broadcaster.core.embedded import EmbeddedRedis
from broadcaster.generations.jobs import JobQueue, oldest_untaken_age
from broadcaster.http.metrics import FrontendMetrics

pytestmark = pytest.mark.anyio


@pytest.fixture
async def jobs(tmp_path: Path) -> AsyncIterator[JobQueue]:
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    url = server.start(reuse=False)
    redis = connection.command_client(url)
    try:
        yield JobQueue(redis, ("anthropic", "openai"))
    finally:
        await redis.aclose()
        server.stop()


def gauge(metrics: FrontendMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_the_oldest_untaken_jobs_age_over_every_queue(jobs: JobQueue) -> None:
    assert await oldest_untaken_age(jobs) == 0.0, "no queue yet"
    old_ms = int(time.time() * 1000) - 40_000  # queued 40 s ago, by Redis's clock
    await jobs.redis.xadd(keys.jobs_key("openai"), {"id": "g-old"}, id=f"{old_ms}-0")
    await jobs.enqueue("g-new", "anthropic")
    age = await oldest_untaken_age(jobs)
    assert 39 < age < 50, "no group yet: every entry is untaken"
    await jobs.ensure_group()
    assert 39 < await oldest_untaken_age(jobs) < 50, "a group that read nothing yet"
    reader = jobs.redis
    taken = await jobs.take(reader, "c1", 10, 100)
    assert {j.generation_id for j in taken} == {"g-old", "g-new"}
    assert await oldest_untaken_age(jobs) == 0.0, "taken (running) jobs are not waiting"
    await asyncio.sleep(0.05)
    await jobs.enqueue("g-later", "openai")
    assert 0 <= await oldest_untaken_age(jobs) < 5, "only the one queued after"


async def test_the_queue_and_provider_gauges_at_scrape(jobs: JobQueue) -> None:
    metrics = FrontendMetrics(123)
    await jobs.advertise(ttl_ms=60_000)  # a live worker serving both
    await jobs.redis.delete(keys.provider_key("openai"))  # whose openai lease ran out
    old_ms = int(time.time() * 1000) - 90_000
    await jobs.redis.xadd(keys.jobs_key("anthropic"), {"id": "g"}, id=f"{old_ms}-0")
    await metrics.read_queues(jobs)
    assert gauge(metrics, "broadcaster_provider_live_workers", provider="anthropic") == 1
    assert gauge(metrics, "broadcaster_provider_live_workers", provider="openai") == 0
    age = gauge(metrics, "broadcaster_generations_queue_age_seconds")
    assert age is not None and 89 < age < 100
    assert gauge(metrics, "broadcaster_sse_connections_limit") == 123
