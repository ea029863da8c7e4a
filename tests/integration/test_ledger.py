"""The ledger of each user's usage, on a database of the suite's Redis that no
front-end uses (front-ends settle every generation they hear of): a generation's end
puts it in its group's unsettled set (the append script), settling counts it once in its
user's day (a wake or a sweep, any number of front-ends), a day's models stay bounded,
and a day expires after the retention."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from broadcaster.core import connection, keys
from broadcaster.core.eventlog import EventLog
from broadcaster.core.events import Usage
from broadcaster.generations.ledger import MAX_MODELS_A_DAY, Ledger, Settled, today
from broadcaster.generations.lifecycle import Generations
from broadcaster.generations.settling import Settler

pytestmark = pytest.mark.anyio

DATABASE = 8
"""No front-end of the suite serves this database."""


@pytest.fixture
async def redis_async(redis_url: str) -> AsyncIterator[Redis]:
    client = connection.command_client(f"{redis_url.rsplit('/', 1)[0]}/{DATABASE}")
    yield client
    await client.aclose()


USAGE = Usage(input=120, output=30, cache_read=90, cache_write=20, reasoning=4)


async def ended(
    redis: Redis, user: str | None, *, model: str = "claude-x", usage: Usage = USAGE
) -> str:
    """A generation for ``user`` that finished with ``usage``."""
    gid = "led-" + secrets.token_hex(8)
    job: dict[str, Any] = {"prompt": "hi", "provider": "anthropic", "model": model}
    if user is not None:
        job["user"] = user
    log = EventLog(redis)
    assert await Generations(log).create(gid, job)
    meta = {"usage": json.dumps(usage.snake())}
    await log.append(gid, [{"type": "finish"}], kind="generation", meta=meta)
    return gid


async def test_an_end_is_settled_once_whoever_tries(redis_async: Redis) -> None:
    user = "u-" + secrets.token_hex(4)
    gid = await ended(redis_async, user)
    assert await redis_async.zscore(keys.unsettled_key(gid), gid) is not None
    ledger = Ledger(redis_async, retention_days=3)
    tries = await asyncio.gather(*(ledger.settle(gid) for _ in range(5)))
    [settled] = [s for s in tries if s is not None]
    assert settled == Settled(gid, user, "anthropic", "claude-x", USAGE, today())
    [[model]] = await ledger.days(user, [today()])
    assert (model.provider, model.model, model.generations, model.usage) == (
        "anthropic",
        "claude-x",
        1,
        USAGE,
    )
    assert await ledger.spent(user) == USAGE.total
    ttl = await redis_async.ttl(keys.usage_key(user, today()))
    assert 3 * 86400 < ttl <= 4 * 86400  # the rest of today, and three days more


async def test_a_sweep_settles_what_no_wake_named_and_a_wake_what_it_names(
    redis_async: Redis,
) -> None:
    user = "u-" + secrets.token_hex(4)
    ledger = Ledger(redis_async, retention_days=1)
    heard: list[Settled] = []
    settler = Settler(ledger, heard.append, grace_ms=0)
    swept = await ended(redis_async, user)
    assert await settler.sweep() >= 1
    woken = await ended(redis_async, user)
    settler.woken("end", woken)
    settler.woken("wait", "123 " + woken)  # not an end: nothing
    runner = asyncio.create_task(settler.run())
    try:
        for _ in range(500):
            if woken in {s.stream_id for s in heard}:
                break
            await asyncio.sleep(0.01)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    mine = [s.stream_id for s in heard if s.user == user]
    assert sorted(mine) == sorted([swept, woken])
    [[model]] = await ledger.days(user, [today()])
    assert model.generations == 2 and model.usage == USAGE + USAGE


async def test_a_generation_for_nobody_is_settled_but_counted_for_nobody(
    redis_async: Redis,
) -> None:
    gid = await ended(redis_async, None)
    settled = await Ledger(redis_async, 1).settle(gid)
    assert settled is not None and settled.user is None and settled.usage == USAGE


async def test_a_day_names_its_models_apart_up_to_a_bound(redis_async: Redis) -> None:
    user = "u-" + secrets.token_hex(4)
    ledger = Ledger(redis_async, retention_days=1)
    one = Usage(input=1, output=1)
    for n in range(MAX_MODELS_A_DAY + 3):
        await ledger.add(user, Settled(f"g{n}", user, "openai", f"m-{n}", one, today()))
    [models] = await ledger.days(user, [today()])
    named = {m.model for m in models}
    assert len(named) == MAX_MODELS_A_DAY + 1 and "(other)" in named
    other = next(m for m in models if m.model == "(other)")
    assert other.generations == 3 and other.usage == Usage(input=3, output=3)
    assert await ledger.spent(user) == 2 * (MAX_MODELS_A_DAY + 3)
