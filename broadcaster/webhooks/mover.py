"""From the outboxes into the deliveries: each outbox entry becomes one delivery per
receiver, its body composed once (``compose``).

The outboxes (one per slot group, ``keys.outbox_key``) are read by one consumer group, so
each entry is moved by one deliverer: the deliveries are added once (``enqueue.lua``'s
marker), through the process's ``Durability``, and only then is the entry acknowledged
and deleted, so a deliverer that dies or a failover in between leaves it pending for
``reclaim`` to move again. One blocking ``XREADGROUP`` reads every outbox; on a Cluster
(one slot per command) each is polled in one pipeline per node.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from broadcaster.core import keys
from broadcaster.core.durability import Durability
from broadcaster.webhooks import compose
from broadcaster.webhooks.queue import GROUP, DeliveryQueue

log = logging.getLogger("broadcaster.webhooks")

RECLAIM_IDLE_MS = 30_000
"""An outbox entry read but not acknowledged for this long (its deliverer died between
reading and moving it) is moved by another deliverer."""

READ_COUNT = 100
"""Entries read from one outbox at a time."""

_Entry = tuple[str, str, dict[str, str]]
"""(outbox key, entry id, fields)."""


class Mover:
    def __init__(
        self,
        redis: Redis,
        queue: DeliveryQueue,
        consumer: str,
        durability: Durability | None = None,
    ) -> None:
        self.redis = redis
        self.queue = queue
        self.consumer = consumer
        self.keys = keys.outbox_keys()
        self.durability = durability or Durability(redis)
        """When a move is acknowledged (``core/durability.py``)."""

    async def ensure_groups(self) -> None:
        """The consumer group on every outbox (and the outbox itself), once each."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.xgroup_create(key, GROUP, id="0", mkstream=True)
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
                raise reply

    async def read_blocking(self, reader: Redis, block_ms: int) -> list[_Entry]:
        """New entries of any outbox, waiting up to ``block_ms`` for one (one Redis)."""
        streams: dict[Any, Any] = dict.fromkeys(self.keys, ">")
        try:
            reply = await reader.xreadgroup(
                GROUP, self.consumer, streams, count=READ_COUNT, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_groups()  # the outboxes were lost (a flush, a failover)
            return []
        return [e for key, entries in stream_reply(reply) for e in _entries(key, entries)]

    async def read_polled(self) -> list[_Entry]:
        """New entries of every outbox, each read on its own (a Cluster)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.xreadgroup(GROUP, self.consumer, {key: ">"}, count=READ_COUNT)
            replies = await pipe.execute(raise_on_error=False)
        return await self._collect(replies, lambda r: r or [])

    async def reclaim(self) -> list[_Entry]:
        """Entries another deliverer read and never moved (it died), taken over."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.xautoclaim(key, GROUP, self.consumer, RECLAIM_IDLE_MS, "0-0", READ_COUNT)
            replies = await pipe.execute(raise_on_error=False)
        return await self._collect(replies, lambda r: [[None, r[1]]])

    async def _collect(self, replies: list[Any], streams: Any) -> list[_Entry]:
        """Entries from per-outbox replies (each shaped as ``streams`` makes it)."""
        out: list[_Entry] = []
        lost = False
        for key, reply in zip(self.keys, replies, strict=True):
            if isinstance(reply, Exception):
                if "NOGROUP" not in str(reply):
                    raise reply
                lost = True
                continue
            for _name, entries in streams(reply):
                out += _entries(key, entries)
        if lost:
            await self.ensure_groups()
        return out

    async def move(self, entries: list[_Entry]) -> int:
        """Add the deliveries of ``entries``, then drop them from their outboxes.
        Returns the events moved."""
        if not entries:
            return 0
        batches = []
        for key, entry_id, fields in entries:
            try:
                batch = compose.deliveries(key, entry_id, fields)
            except (KeyError, ValueError) as exc:
                log.error(
                    "webhook outbox entry %s %s is malformed (%r): dropped", key, entry_id, exc
                )
                continue
            if batch:
                batches.append(batch)
        if not self.durability.waits:
            await self.queue.enqueue(batches)
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, entry_id, _ in entries:
                    pipe.xack(key, GROUP, entry_id)
                    pipe.xdel(key, entry_id)
                await pipe.execute()
            return len(batches)
        await self.queue.enqueue(batches, self.durability)
        # Confirmed first, then dropped: each outbox's entries in one request of its node's
        # committer, all of them in the same round.
        by_key: dict[str, list[str]] = {}
        for key, entry_id, _ in entries:
            by_key.setdefault(key, []).append(entry_id)
        await asyncio.gather(
            *(
                self.durability.run(key, [("XACK", key, GROUP, *ids), ("XDEL", key, *ids)])
                for key, ids in by_key.items()
            )
        )
        return len(batches)


def stream_reply(reply: Any) -> list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes] | None]]]]:
    """``XREADGROUP``'s reply as redis-py gives it (RESP2), typed; None when it timed out."""
    return cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes] | None]]]], reply or [])


def _entries(key: Any, entries: Any) -> list[_Entry]:
    name = key.decode() if isinstance(key, bytes) else str(key)
    out = []
    for entry_id, fields in cast(list[tuple[bytes, dict[bytes, bytes] | None]], entries):
        if fields:  # None: trimmed away meanwhile
            decoded = {k.decode(): v.decode() for k, v in fields.items()}
            out.append((name, entry_id.decode(), decoded))
    return out
