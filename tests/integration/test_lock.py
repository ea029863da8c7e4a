"""The lock the front-ends' rounds take (``core/lock.py``), on the real Redis: one holder
at a time, and a release that deletes only its own holder's lock, in one step: a holder
whose lock expired, and was taken by another, leaves the other's alone."""

from __future__ import annotations

import secrets

import pytest
from redis.asyncio import Redis

from broadcaster.core.lock import Lock
from tests.support.polling import poll

pytestmark = pytest.mark.anyio


def _key() -> str:
    return "bc:{test}:lock:" + secrets.token_hex(4)


async def test_one_holder_at_a_time_and_the_holder_releases(redis_async: Redis) -> None:
    key = _key()
    first, second = Lock(redis_async, key, 10_000), Lock(redis_async, key, 10_000)
    assert first.holder != second.holder, "each lock is its own holder"
    assert await first.take()
    assert not await second.take(), "held: nobody else gets it"
    assert not await second.release(), "not its lock: nothing released"
    assert await redis_async.get(key) == first.holder.encode()
    assert await first.release()
    assert await redis_async.exists(key) == 0
    assert await second.take(), "released: the next one gets it at once"
    assert 0 < await redis_async.pttl(key) <= 10_000, "it expires by itself"
    assert await second.release()


async def test_an_expired_holder_does_not_release_the_next_holders_lock(
    redis_async: Redis,
) -> None:
    """The first holder's lock expires (here: deleted, as its PX would) and another takes
    it; the first one's late release returns False and the second still holds it."""
    key = _key()
    late, next_one = Lock(redis_async, key, 10_000), Lock(redis_async, key, 10_000)
    assert await late.take()
    await redis_async.delete(key)  # its time ran out
    assert await next_one.take()
    assert not await late.release(), "the late holder's release finds another's lock"
    assert await redis_async.get(key) == next_one.holder.encode()
    assert not await Lock(redis_async, key, 10_000).take(), "still held: nobody else runs"
    assert await next_one.release()


async def test_a_lock_expires_when_its_holder_never_releases(redis_async: Redis) -> None:
    """A holder that died mid-round: its lock lapses after ``ms`` (here 50 ms) by Redis's
    own expiry, and the next one to ask gets it."""
    key = _key()
    assert await Lock(redis_async, key, 50).take()
    taker = Lock(redis_async, key, 10_000)
    await poll(taker.take, "the lock to lapse")
    assert await redis_async.get(key) == taker.holder.encode()
    assert await taker.release()
