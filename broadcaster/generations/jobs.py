"""The generation job queues: one Redis Stream per model provider, each read by the same
consumer group.

A worker reads the queues of the providers it serves with one ``XREADGROUP`` and holds
each job in its pending list while it runs (refreshed with ``XCLAIM``; a dead worker's
jobs are taken over with ``XAUTOCLAIM`` after the lease). Workers advertise their
providers (``keys.provider_key`` while alive, ``keys.PROVIDERS_SEEN_KEY`` for good), so
a request for a provider once served is queued even while no worker lives. The queue
only says which generation to run: the claim (``lifecycle``) decides whether it still
needs running, so a duplicate job is harmless. A start's note in ``keys.STARTING_KEY``
is removed with its ``XADD`` (``queue_job.lua``): one left behind is a cut-off start,
which ``overdue`` ends.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from broadcaster.core import keys
from broadcaster.core.eventlog import script
from broadcaster.generations.request import PROVIDERS


@dataclass(frozen=True, slots=True)
class Job:
    entry_id: bytes
    generation_id: str
    provider: str = "anthropic"
    queue: str = keys.jobs_key("anthropic")
    """The key it was read from: where it is acknowledged."""
    taken_over: bool = False
    """Taken from a worker that stopped refreshing it (``XAUTOCLAIM``), not new."""


def provider_of(queue: str) -> str:
    """The provider whose jobs a queue carries."""
    return "anthropic" if queue == keys.LEGACY_JOBS_KEY else queue.rsplit(":", 1)[1]


def _jobs(
    queue: str,
    entries: list[tuple[bytes, dict[bytes, bytes] | None]],
    taken_over: bool = False,
) -> list[Job]:
    # XAUTOCLAIM reports entries deleted meanwhile with no fields; skip them.
    provider = provider_of(queue)
    return [
        Job(eid, f[b"id"].decode(), provider, queue, taken_over)
        for eid, f in entries
        if f and b"id" in f
    ]


def queues(providers: Sequence[str], legacy: bool = True) -> list[str]:
    """The queue keys that carry jobs for ``providers`` (with ``legacy``, the previous
    version's single queue too, for ``anthropic``)."""
    found = [keys.jobs_key(p) for p in providers]
    if legacy and "anthropic" in providers:
        found.append(keys.LEGACY_JOBS_KEY)
    return found


class JobQueue:
    """The queues of ``providers`` (all of them for a front-end; a worker's own)."""

    def __init__(
        self, redis: Redis, providers: Sequence[str] = PROVIDERS, *, legacy: bool = True
    ) -> None:
        self.redis = redis
        self.providers = tuple(providers)
        self.keys = queues(self.providers, legacy)
        self.group = keys.JOBS_GROUP
        self._queue_job = redis.register_script(script("queue_job.lua", "broadcaster.generations"))

    async def enqueue(self, generation_id: str, provider: str = "anthropic") -> None:
        """Queue the generation's job; its start, if one was under way, is over."""
        await self._queue_job(
            keys=[keys.jobs_key(provider), keys.STARTING_KEY], args=[generation_id]
        )

    async def starting(self, generation_id: str) -> None:
        """Note that a start of ``generation_id`` is under way (until ``enqueue``)."""
        await self.redis.zadd(keys.STARTING_KEY, {generation_id: int(time.time() * 1000)})

    async def not_starting(self, generation_id: str) -> None:
        """A start that stored nothing, or undid what it stored: nothing to end."""
        await self.redis.zrem(keys.STARTING_KEY, generation_id)

    async def stalled_starts(self, older_than_ms: int, count: int = 100) -> list[str]:
        """Generations whose start began more than ``older_than_ms`` ago and never queued
        its job (the process died, or Redis failed it, between its steps)."""
        cutoff = int(time.time() * 1000) - older_than_ms
        found = await self.redis.zrangebyscore(
            keys.STARTING_KEY, "-inf", cutoff, start=0, num=count
        )
        return [g.decode() if isinstance(g, bytes) else str(g) for g in found]

    async def depth(self) -> int:
        """Jobs queued or running, over every queue."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.xlen(key)
            return sum(int(n) for n in await pipe.execute())

    async def admission(self, provider: str) -> tuple[int, bool]:
        """(the depth over every queue, whether a worker has ever served ``provider``),
        in one round trip: every key involved shares the ``{jobs}`` tag. A provider that
        is none of the built-in ones (an agent) counts its own queue too."""
        counted = self.keys if provider in self.providers else [*self.keys, keys.jobs_key(provider)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in counted:
                pipe.xlen(key)
            pipe.hexists(keys.PROVIDERS_SEEN_KEY, provider)
            *depths, seen = await pipe.execute()
        return sum(int(n) for n in depths), bool(seen)

    async def advertise(self, ttl_ms: int) -> None:
        """Say, for ``ttl_ms``, that a live worker serves each of ``providers``, and for
        good that the deployment serves them."""
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            for provider in self.providers:
                pipe.set(keys.provider_key(provider), "1", px=ttl_ms)
            pipe.hset(keys.PROVIDERS_SEEN_KEY, mapping=dict.fromkeys(self.providers, now_ms))
            await pipe.execute()

    async def provider_status(self) -> dict[str, dict[str, Any]]:
        """Every provider a worker ever advertised: whether a live worker serves it now,
        and when one last advertised it (ISO 8601)."""
        seen = cast(dict[bytes, bytes], await self.redis.hgetall(keys.PROVIDERS_SEEN_KEY))
        names = sorted(k.decode() for k in seen)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.exists(keys.provider_key(name))
            live = await pipe.execute()
        return {
            name: {
                "live_workers": bool(up),
                "last_seen": _iso(int(seen[name.encode()])),
            }
            for name, up in zip(names, live, strict=True)
        }

    async def _every_queue(self) -> list[str]:
        """These queues, and those of every other provider a worker ever advertised (the
        agents workers serve, docs/agents.md): their jobs end overdue the same way."""
        seen = cast(list[bytes], await self.redis.hkeys(keys.PROVIDERS_SEEN_KEY))
        more = sorted({k.decode() for k in seen} - set(self.providers))
        return [*self.keys, *(keys.jobs_key(name) for name in more)]

    async def forget(self, provider: str) -> bool:
        """Forget that the deployment serves ``provider`` (it stopped serving it): new
        requests for it are refused again until a worker advertises it. False if unknown."""
        return bool(await self.redis.hdel(keys.PROVIDERS_SEEN_KEY, provider))

    async def overdue(self, timeout_ms: int, count: int = 100) -> list[tuple[Job, str | None]]:
        """Jobs no worker has worked on for ``timeout_ms``, each with the worker that last
        held it: queued and never taken (None), or held by a worker that stopped
        refreshing its hold (it died, and no other took the job over). At most ``count``
        per queue."""
        cutoff = int(time.time() * 1000) - timeout_ms
        found: list[tuple[Job, str | None]] = []
        for key in await self._every_queue():
            try:
                groups = await self.redis.xinfo_groups(key)
            except ResponseError:
                continue  # no such queue yet
            group = next((g for g in groups if _text(g.get("name")) == self.group), None)
            if group is not None and not group.get("pending") and group.get("lag") == 0:
                continue  # every job delivered, none held: none overdue (one command)
            delivered = _text(group.get("last-delivered-id")) if group else "0-0"
            # Never delivered to any worker: after the group's last-delivered id.
            fresh = cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                await self.redis.xrange(key, min=f"({delivered}", max=str(cutoff), count=count),
            )
            found += [(job, None) for job in _jobs(key, list(fresh))]
            if group is None:
                continue
            stale = await self.redis.xpending_range(
                key, self.group, min="-", max="+", count=count, idle=timeout_ms
            )
            if not stale:
                continue
            owners = {_text(p["message_id"]): _text(p["consumer"]) for p in stale}
            async with self.redis.pipeline(transaction=False) as pipe:
                for entry_id in owners:
                    pipe.xrange(key, min=entry_id, max=entry_id)
                entries = [e for reply in await pipe.execute() for e in reply]
            found += [(job, owners[job.entry_id.decode()]) for job in _jobs(key, entries)]
        return found

    async def ensure_group(self) -> None:
        for key in self.keys:
            try:
                await self.redis.xgroup_create(key, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def take(
        self, reader: Redis, consumer: str, count: int, block_ms: int | None
    ) -> list[Job]:
        """New jobs for ``consumer`` from every queue at once (blocking up to ``block_ms``
        on ``reader``; None: not at all), the oldest first. ``COUNT`` applies per queue,
        so each queue is asked for its share of ``count``: at most ``len(queues) - 1``
        more come back."""
        per_queue = max(1, count // len(self.keys))
        resp = await reader.xreadgroup(
            self.group, consumer, dict.fromkeys(self.keys, ">"), count=per_queue, block=block_ms
        )
        reply = cast(list[tuple[bytes, Any]], resp or [])
        taken = [job for key, entries in reply for job in _jobs(key.decode(), entries)]
        return sorted(taken, key=_age)

    async def take_abandoned(self, consumer: str, min_idle_ms: int, count: int) -> list[Job]:
        """Jobs whose holder has not refreshed them for ``min_idle_ms`` (it died)."""
        taken: list[Job] = []
        for key in self.keys:
            if len(taken) >= count:
                break
            resp = await self.redis.xautoclaim(
                key,
                self.group,
                consumer,
                min_idle_time=min_idle_ms,
                start_id="0-0",
                count=count - len(taken),
            )
            taken += _jobs(key, resp[1], True)  # [next start id, entries, deleted ids]
        return taken

    async def refresh(self, consumer: str, jobs: Sequence[Job]) -> None:
        """Reset the idle time of jobs this consumer holds, so nobody takes them over."""
        by_queue: dict[str, list[int | bytes | str | memoryview]] = {}
        for job in jobs:
            by_queue.setdefault(job.queue, []).append(job.entry_id)
        for key, entry_ids in by_queue.items():
            await self.redis.xclaim(
                key, self.group, consumer, min_idle_time=0, message_ids=entry_ids, justid=True
            )

    async def done(self, job: Job) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(job.queue, self.group, job.entry_id)
            pipe.xdel(job.queue, job.entry_id)
            await pipe.execute()

    async def hand_back(self, job: Job) -> None:
        """Give a job back for another worker to take at once (shutdown)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(keys.jobs_key(job.provider), {"id": job.generation_id})
            pipe.xack(job.queue, self.group, job.entry_id)
            pipe.xdel(job.queue, job.entry_id)
            await pipe.execute()


async def oldest_untaken_age(jobs: JobQueue) -> float:
    """Seconds since the oldest job of any queue that no worker has read yet was queued
    (its entry id is the Redis server's time): the entries after the group's last
    delivered one. 0 when every job is taken."""
    async with jobs.redis.pipeline(transaction=False) as pipe:
        for key in jobs.keys:
            pipe.xinfo_groups(key)
        groups = await pipe.execute(raise_on_error=False)
    async with jobs.redis.pipeline(transaction=False) as pipe:
        for key, found in zip(jobs.keys, groups, strict=True):
            if not isinstance(found, list):
                continue  # no such queue: no job in it
            start = "-"  # no group yet: every entry is untaken
            for group in found:
                if _text(group.get("name", "")) == jobs.group:
                    if group.get("lag") == 0:
                        start = ""  # every job delivered: none waits (no read)
                    else:
                        start = "(" + _text(group.get("last-delivered-id", "0-0"))
            if start:
                pipe.xrange(key, min=start, max="+", count=1)
        firsts = await pipe.execute(raise_on_error=False) if len(pipe) else []
    oldest = [int(_text(f[0][0]).partition("-")[0]) for f in firsts if isinstance(f, list) and f]
    if not oldest:
        return 0.0
    return max(0.0, time.time() - min(oldest) / 1000)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _age(job: Job) -> tuple[int, int]:
    ms, _, seq = job.entry_id.partition(b"-")
    return int(ms), int(seq or 0)
