"""The generation job queue: a Redis Stream read by one consumer group.

The front-end enqueues a generation id; a worker reads it with ``XREADGROUP`` (so each
job goes to one worker) and holds it in its pending list while it runs. A running worker
refreshes its hold on its jobs (``XCLAIM`` to itself resets the idle time); the jobs of a
worker that died stop being refreshed, and after the lease time another worker takes them
with ``XAUTOCLAIM``. A finished job is acknowledged and deleted. A job handed back on
shutdown is re-added at the tail, so another worker picks it up at once.

The queue only says *which* generation to run; whether it still needs running, and who
owns its stream, is decided by the event log (``EventLog.claim``): a job delivered twice
is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from broadcaster import keys


@dataclass(frozen=True, slots=True)
class Job:
    entry_id: bytes
    generation_id: str


def _jobs(entries: list[tuple[bytes, dict[bytes, bytes] | None]]) -> list[Job]:
    # XAUTOCLAIM reports entries deleted meanwhile with no fields; skip them.
    return [Job(eid, f[b"id"].decode()) for eid, f in entries if f and b"id" in f]


class JobQueue:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.key = keys.JOBS_KEY
        self.group = keys.JOBS_GROUP

    async def enqueue(self, generation_id: str) -> None:
        await self.redis.xadd(self.key, {"id": generation_id})

    async def depth(self) -> int:
        return int(await self.redis.xlen(self.key))

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.key, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def take(self, reader: Redis, consumer: str, count: int, block_ms: int) -> list[Job]:
        """New jobs for ``consumer`` (blocking up to ``block_ms`` on ``reader``)."""
        resp = await reader.xreadgroup(
            self.group, consumer, {self.key: ">"}, count=count, block=block_ms
        )
        reply = cast(list[tuple[bytes, Any]], resp or [])
        return [job for _, entries in reply for job in _jobs(entries)]

    async def take_abandoned(self, consumer: str, min_idle_ms: int, count: int) -> list[Job]:
        """Jobs whose holder has not refreshed them for ``min_idle_ms`` (it died)."""
        resp = await self.redis.xautoclaim(
            self.key, self.group, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count
        )
        return _jobs(resp[1])  # [next start id, entries, deleted ids]

    async def refresh(self, consumer: str, entry_ids: list[bytes]) -> None:
        """Reset the idle time of jobs this consumer holds, so nobody takes them over."""
        if entry_ids:
            await self.redis.xclaim(
                self.key,
                self.group,
                consumer,
                min_idle_time=0,
                message_ids=list[int | bytes | str | memoryview](entry_ids),
                justid=True,
            )

    async def done(self, job: Job) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.key, self.group, job.entry_id)
            pipe.xdel(self.key, job.entry_id)
            await pipe.execute()

    async def hand_back(self, job: Job) -> None:
        """Give a job back for another worker to take at once (shutdown)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.key, {"id": job.generation_id})
            pipe.xack(self.key, self.group, job.entry_id)
            pipe.xdel(self.key, job.entry_id)
            await pipe.execute()
