"""What a client's forks may copy per minute (``BROADCASTER_FORK_BYTES_PER_MINUTE``):
bytes counted in Redis like the rate limit (``auth/quota.py``), against the API key or
the token's subject that asked, charged a page at a time as the fork copies
(``fork.make``'s ``charge``) and refused past the budget."""

from __future__ import annotations

from redis.asyncio import Redis

from broadcaster.auth import quota
from broadcaster.durable.fork import Refused


class OverBudget(Refused):
    """The payer spent this minute's budget: 429 with ``retry_after`` (seconds)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"over {limit} bytes of forks per minute; nothing was forked")
        self.retry_after = quota.retry_after()


class TooLarge(Refused):
    """The fork alone copies more than a minute's budget: 413, whenever it is asked."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the fork copies more than BROADCASTER_FORK_BYTES_PER_MINUTE ({limit} bytes); "
            "nothing was forked"
        )


def _quota(payer: str) -> str:
    return "fork-bytes:" + payer


async def fork_room(redis: Redis, payer: str, limit: int) -> None:
    """``OverBudget`` before anything is made when ``payer`` has spent this minute's."""
    if limit and await quota.spent(redis, _quota(payer)) >= limit:
        raise OverBudget(limit)


class ForkBudget:
    """What one fork has copied, charged a page at a time (``charge_fork``)."""

    def __init__(self, redis: Redis, payer: str, limit: int) -> None:
        self.redis, self.payer, self.limit = redis, payer, limit
        self.charged = 0

    async def charge(self, n: int) -> None:
        await charge_fork(self.redis, self.payer, n, self.limit, self.charged)
        self.charged += n


async def charge_fork(redis: Redis, payer: str, n: int, limit: int, charged: int) -> None:
    """Count ``n`` more bytes copied by a fork against ``payer``'s budget of ``limit``
    per clock minute (``charged``: what this fork was charged before). Past the budget
    the bytes are given back and the fork is refused: ``TooLarge`` if it alone is larger
    than a minute's budget, else ``OverBudget``."""
    if not limit or not n:
        return
    spent = await quota.charge(redis, _quota(payer), n)
    if spent.total <= limit:
        return
    await quota.refund(redis, spent, n)
    if charged + n > limit:
        raise TooLarge(limit)
    raise OverBudget(limit)
