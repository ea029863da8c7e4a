"""What a client may spend per clock minute, counted in Redis so that every front-end
shares the count: one counter per name and minute (``keys.ratelimit_key``), which
expires by itself (``keys.RATELIMIT_TTL``). The rate per API key or token counts
requests; a fork's budget counts bytes.

A clock minute, not a sliding window: two commands per charge, no script, and a client
that spent its minute knows when it may go on (``retry_after``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from broadcaster.core import keys


@dataclass(frozen=True, slots=True)
class Charge:
    """What one charge left: the counter it went to, and its total this minute."""

    counter: str
    total: int


def counter(name: str, now: float | None = None) -> str:
    """The counter of ``name`` for the clock minute of ``now`` (default: now)."""
    return keys.ratelimit_key(name, int((time.time() if now is None else now) // 60))


def retry_after(now: float | None = None) -> int:
    """Seconds until the next clock minute (1 to 60): when a spent quota is whole again."""
    return 60 - int(time.time() if now is None else now) % 60


async def charge(redis: Redis, name: str, n: int = 1) -> Charge:
    """Count ``n`` against ``name``'s minute; the total after it (the caller compares it
    with its limit, and may ``refund``)."""
    key = counter(name)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incrby(key, n)
        pipe.expire(key, keys.RATELIMIT_TTL)
        total, _ = await pipe.execute()
    return Charge(key, int(total))


async def refund(redis: Redis, charged: Charge, n: int) -> None:
    """Give ``n`` back to the minute ``charged`` went to (a charge refused past its limit:
    what was refused is not spent)."""
    await redis.decrby(charged.counter, n)


async def spent(redis: Redis, name: str) -> int:
    """What ``name`` has spent this minute (one ``GET``; 0 when nothing)."""
    return int(await redis.get(counter(name)) or 0)
