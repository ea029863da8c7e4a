"""The deliveries stream and the dead-letter list (``keys.WEBHOOK_*``): every Redis
command the deliverer sends about them.

A delivery is an entry of one stream read by one consumer group. It stays *pending*
until it is settled: delivered (acknowledged and deleted), or dead (moved to the
dead-letter list). Its retry schedule is what the group already keeps for a pending
entry: the delivery count (attempts so far) and the idle time (since its last attempt
ended), so a deliverer that dies leaves nothing that only it knew.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from broadcaster.core import keys
from broadcaster.core.durability import Durability
from broadcaster.core.eventlog import script
from broadcaster.webhooks.compose import Delivery

KEY = keys.WEBHOOK_DELIVERIES_KEY
GROUP = keys.WEBHOOK_GROUP


@dataclass(frozen=True, slots=True)
class Pending:
    """A delivery waiting for its next attempt, as the group sees it."""

    entry_id: str
    consumer: str
    idle_ms: int
    attempts: int


@dataclass(frozen=True, slots=True)
class Dead:
    """An entry of the dead-letter list."""

    entry_id: str
    delivery: Delivery
    attempts: int
    reason: str
    queued: str
    failed_at: str


async def ensure_group(redis: Redis, key: str) -> None:
    """Create the consumer group on ``key`` (and the key), from its first entry."""
    try:
        await redis.xgroup_create(key, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def evalsha_many(
    redis: Redis, code: AsyncScript, calls: Sequence[tuple[list[str], list[Any]]]
) -> list[Any]:
    """Run a script once per call in one pipeline (``EVALSHA`` by name, which redis-py's
    cluster pipeline routes by its keys); loaded first where a node lacks it."""
    for attempt in range(2):
        async with redis.pipeline(transaction=False) as pipe:
            for script_keys, args in calls:
                pipe.execute_command("EVALSHA", code.sha, len(script_keys), *script_keys, *args)
            replies = list(await pipe.execute(raise_on_error=False))
        if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies):
            await redis.script_load(code.script)
            continue
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies
    raise AssertionError("unreachable")


class DeliveryQueue:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._enqueue = redis.register_script(script("enqueue.lua", "broadcaster.webhooks"))
        self._settle = redis.register_script(script("settle.lua", "broadcaster.webhooks"))
        self._replay = redis.register_script(script("replay.lua", "broadcaster.webhooks"))

    async def enqueue(
        self, batches: Sequence[list[Delivery]], durability: Durability | None = None
    ) -> int:
        """Add each batch (one outbox entry's deliveries) unless it was added before;
        one round trip (through ``durability``'s committer, when it waits: acknowledged
        once confirmed, in one round with the other writers'). Returns the deliveries
        added."""
        calls = []
        for batch in batches:
            args: list[Any] = [keys.WEBHOOK_MOVED_TTL]
            for d in batch:
                args += [d.webhook_id, d.type, d.stream_id, d.to, d.body]
            calls.append(([KEY, keys.webhook_moved_key(batch[0].webhook_id)], args))
        if not calls:
            return 0
        if durability is not None and durability.waits:
            run = durability.script
            replies = await asyncio.gather(*(run(self._enqueue, k, a) for k, a in calls))
            return sum(int(n) for n in replies)
        return sum(int(n) for n in await evalsha_many(self.redis, self._enqueue, calls))

    async def backlog(self) -> tuple[int, int | None]:
        """Deliveries not yet settled, and the time (ms) of the oldest one."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(KEY)
            pipe.xrange(KEY, count=1)
            count, oldest = await pipe.execute()
        first = int(oldest[0][0].split(b"-")[0]) if oldest else None
        return int(count), first

    async def pending(self, start: str, count: int) -> list[Pending]:
        """Up to ``count`` pending deliveries from entry id ``start`` on, in id order."""
        rows = await self.redis.xpending_range(KEY, GROUP, min=start, max="+", count=count)
        return [
            Pending(
                _text(r["message_id"]),
                _text(r["consumer"]),
                int(r["time_since_delivered"]),
                int(r["times_delivered"]),
            )
            for r in rows
        ]

    async def alive(self, consumer: str, until_ms: int, now_ms: int) -> list[str]:
        """Say ``consumer`` runs until ``until_ms``; returns the deliverers whose own
        such time is before ``now_ms``: gone (at most 100 at a time). One round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.WEBHOOK_DELIVERERS_KEY, {consumer: until_ms})
            pipe.zrangebyscore(keys.WEBHOOK_DELIVERERS_KEY, "-inf", f"({now_ms}", 0, 100)
            _, gone = await pipe.execute()
        return [_text(name) for name in gone]

    async def forget_deliverers(self, names: Sequence[str]) -> None:
        if names:
            await self.redis.zrem(keys.WEBHOOK_DELIVERERS_KEY, *names)

    async def claim(self, consumer: str, entry_id: str, min_idle_ms: int) -> Delivery | None:
        """Take a pending delivery for an attempt (its delivery count goes up by one),
        if it has been idle ``min_idle_ms``: of deliverers racing for it, one wins."""
        got = await self.redis.xclaim(KEY, GROUP, consumer, min_idle_ms, [entry_id])
        entries = cast(list[tuple[bytes, dict[bytes, bytes] | None]], got)
        fields = entries[0][1] if entries else None
        return Delivery.from_fields(fields) if fields else None

    async def touch(self, consumer: str, entry_id: str) -> None:
        """Its idle time counts from now (the end of an attempt): the wait before the
        next attempt starts when this one ended, not when it began."""
        await self.redis.xclaim(KEY, GROUP, consumer, 0, [entry_id], justid=True)

    async def done(self, entry_id: str) -> None:
        await self._settle(keys=[KEY, keys.WEBHOOK_DEAD_KEY], args=[GROUP, entry_id, "done"])

    async def dead(self, entry_id: str, attempts: int, reason: str) -> None:
        args: list[str | int] = [
            GROUP,
            entry_id,
            "dead",
            attempts,
            reason[:500],
            keys.WEBHOOK_DEAD_MAX_LEN,
        ]
        await self._settle(keys=[KEY, keys.WEBHOOK_DEAD_KEY], args=args)

    async def dead_list(self, count: int = 1000) -> list[Dead]:
        """The dead-letter list, oldest first."""
        rows = await self.redis.xrange(keys.WEBHOOK_DEAD_KEY, count=count)
        out = []
        for entry_id, raw in cast(list[tuple[bytes, dict[bytes, bytes]]], rows):
            out.append(
                Dead(
                    entry_id.decode(),
                    Delivery.from_fields(raw),
                    int(raw.get(b"attempts", b"0")),
                    raw.get(b"reason", b"").decode(),
                    raw.get(b"queued", b"").decode(),
                    raw.get(b"failed_at", b"").decode(),
                )
            )
        return out

    async def replay(self, entry_ids: Sequence[str]) -> list[str]:
        """Put dead deliveries back with a fresh schedule; the ids found (and put back)."""
        if not entry_ids:
            return []
        put = await self._replay(keys=[keys.WEBHOOK_DEAD_KEY, KEY], args=[*entry_ids])
        return [_text(entry) for entry in put]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
