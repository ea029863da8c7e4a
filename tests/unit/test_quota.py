"""Per-minute quotas (``auth/quota.py``), on fakeredis: one counter per name and clock
minute, shared by whoever counts into it, expiring by itself; a refund goes to the
minute the charge went to; a spent quota is whole again at the next minute."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

from broadcaster.auth import quota
from broadcaster.core import keys

if TYPE_CHECKING:
    import fakeredis

pytestmark = pytest.mark.anyio


@pytest.fixture
async def redis(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    """fakeredis, with the quota's clock held inside one minute: a test's charges never
    straddle two."""
    import fakeredis

    monkeypatch.setattr(quota, "time", SimpleNamespace(time=lambda: 1_800_000_030.0))
    client = fakeredis.FakeAsyncRedis()
    yield client
    await client.aclose()


def test_one_counter_per_name_and_clock_minute() -> None:
    assert quota.counter("k1", now=120.0) == keys.ratelimit_key("k1", 2)
    assert quota.counter("k1", now=179.9) == quota.counter("k1", now=120.0)
    assert quota.counter("k1", now=180.0) != quota.counter("k1", now=179.9)
    assert quota.counter("k2", now=120.0) != quota.counter("k1", now=120.0)


def test_retry_after_is_the_rest_of_the_minute() -> None:
    assert quota.retry_after(now=120.0) == 60
    assert quota.retry_after(now=121.4) == 59
    assert quota.retry_after(now=179.9) == 1


async def test_charges_add_up_and_the_counter_expires(redis: fakeredis.FakeAsyncRedis) -> None:
    assert await quota.spent(redis, "key-a") == 0
    first = await quota.charge(redis, "key-a")
    assert first.total == 1
    second = await quota.charge(redis, "key-a", 10)
    assert (second.total, second.counter) == (11, first.counter)
    assert await quota.spent(redis, "key-a") == 11
    assert await quota.spent(redis, "key-b") == 0, "another name counts apart"
    ttl = await redis.ttl(first.counter)
    assert 60 < ttl <= keys.RATELIMIT_TTL, "outlives its minute, then goes"


async def test_a_refund_goes_back_to_the_minute_charged(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    kept = await quota.charge(redis, "payer", 100)
    refused = await quota.charge(redis, "payer", 50)
    assert refused.total == 150
    await quota.refund(redis, refused, 50)
    assert await quota.spent(redis, "payer") == kept.total == 100
    assert int(await redis.get(refused.counter)) == 100
