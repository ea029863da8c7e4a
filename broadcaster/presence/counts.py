"""Who watches a stream, across every front-end: the counts in Redis, the front-ends'
heartbeats, and the reading of both. Shared by the front-ends (which count, and read the
counts for ``GET .../viewers``) and the worker (which ends a generation nobody watches).

Each front-end writes its own count of a stream's viewers into the stream's presence hash
(``keys.presence_key``) when it changes, never per event; the sum over the front-ends
that are alive is the stream's count. A front-end is alive while its heartbeat
(``keys.FRONTENDS_KEY``, one ``ZADD`` per heartbeat) is younger than two heartbeats: the
counts of one killed with ``kill -9`` stop counting then, and the first front-end to
notice removes them (it knows which streams from the dead one's own set). Each heartbeat
records the time its front-end is dead if it beats no more, so that a reader (a worker
among them) needs no heartbeat setting of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from broadcaster.core import connection, keys
from broadcaster.core.eventlog import ScriptCall, script, scripts_pipelined

MAX_SUBJECTS = 100
"""The most subjects ``viewers`` names (the count counts them all)."""
BATCH = 100
"""Streams whose counts are written in one round (one script call per slot group among
them, in one pipeline; sorted by group first, so a round's streams share few): of a
front-end's flush, or of the reap of a dead front-end's counts."""
PER_CALL = 100
"""The most streams one script call writes (it holds Redis meanwhile)."""


@dataclass(frozen=True, slots=True)
class Viewers:
    count: int
    subjects: list[str]


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class PresenceStore:
    def __init__(self, redis: Redis, heartbeat: float = 10.0) -> None:
        self.redis = redis
        self.heartbeat = heartbeat
        self.publish, self.db = connection.publish_target(redis)
        self._set = redis.register_script(script("presence_set.lua", "broadcaster.presence"))

    @property
    def dead_after_ms(self) -> int:
        """A front-end silent for two heartbeats is dead."""
        return int(self.heartbeat * 2 * 1000)

    async def set(
        self,
        stream_id: str,
        instance: str,
        count: int,
        subjects: Sequence[str] = (),
        dead: Sequence[str] = (),
    ) -> tuple[int, int]:
        """``instance`` now serves ``count`` viewers of ``stream_id`` (``dead`` front-ends'
        counts are dropped): the stream's total before and after, published to the
        front-ends watching it when it changed."""
        (change,) = await self.set_many(instance, [(stream_id, count, subjects)], dead)
        return change

    async def set_many(
        self,
        instance: str,
        counts: Sequence[tuple[str, int, Sequence[str]]],
        dead: Sequence[str] = (),
    ) -> list[tuple[int, int]]:
        """``set`` of each ``(stream id, count, subjects)``: one script call per slot group
        for all of its streams, the groups' calls in one pipeline; each stream's totals
        before and after, in order."""
        by_group: dict[str, list[int]] = {}
        for i, (stream_id, _, _) in enumerate(counts):
            by_group.setdefault(keys.outbox_key(stream_id), []).append(i)
        calls = [
            (outbox, at[n : n + PER_CALL])
            for outbox, at in by_group.items()
            for n in range(0, len(at), PER_CALL)
        ]
        made = [
            self._group_call(instance, outbox, [counts[i] for i in at], dead)
            for outbox, at in calls
        ]
        replies = await scripts_pipelined(self.redis, self._set, made)
        out: list[tuple[int, int]] = [(0, 0)] * len(counts)
        for (_, at), reply in zip(calls, replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            for n, i in enumerate(at):
                out[i] = (int(reply[2 * n]), int(reply[2 * n + 1]))
        return out

    def _group_call(
        self,
        instance: str,
        outbox: str,
        counts: Sequence[tuple[str, int, Sequence[str]]],
        dead: Sequence[str],
    ) -> ScriptCall:
        """The script's keys and arguments for the counts of one slot group's streams."""
        script_keys = [outbox]
        args: list[Any] = [instance, self.publish, keys.OUTBOX_MAX_LEN, keys.PRESENCE_TTL]
        args += [len(dead), *dead]
        for stream_id, count, subjects in counts:
            script_keys += [keys.presence_key(stream_id), keys.meta_key(stream_id)]
            args += [
                count,
                json.dumps(list(subjects)[:MAX_SUBJECTS]) if subjects else "",
                stream_id,
                keys.push_channel(stream_id, self.db),
            ]
        return script_keys, args

    async def beat(self, instance: str) -> tuple[list[str], list[str]]:
        """Say ``instance`` is alive; the front-ends alive and those dead (silent for two
        heartbeats), in one round trip."""
        now = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.FRONTENDS_KEY, {instance: now + self.dead_after_ms})
            pipe.zrange(keys.FRONTENDS_KEY, 0, -1, withscores=True)
            _, members = await pipe.execute()
        return self._split(members, now)

    async def frontends(self) -> tuple[list[str], list[str]]:
        """The front-ends alive and those dead."""
        members = await self.redis.zrange(keys.FRONTENDS_KEY, 0, -1, withscores=True)
        return self._split(members, int(time.time() * 1000))

    def _split(self, members: Any, now: int) -> tuple[list[str], list[str]]:
        alive: list[str] = []
        dead: list[str] = []
        for member, score in cast(list[tuple[bytes, float]], members):
            (alive if score > now else dead).append(_text(member))
        return alive, dead

    async def viewers(self, stream_ids: Sequence[str]) -> list[Viewers]:
        """Each stream's viewers on the front-ends alive, in two round trips."""
        alive, _ = await self.frontends()
        live = set(alive)
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream_id in stream_ids:
                pipe.hgetall(keys.presence_key(stream_id))
            replies = await pipe.execute()
        out = []
        for raw in replies:
            fields = {_text(k): _text(v) for k, v in cast(dict[Any, Any], raw).items()}
            count, subjects = 0, set()
            for field, value in fields.items():
                if field in live:
                    count += int(value)
                    subjects.update(json.loads(fields.get(field + ":s", "[]")))
            out.append(Viewers(count, sorted(subjects)[:MAX_SUBJECTS]))
        return out

    async def track(self, instance: str, stream_ids: Sequence[str], watching: bool) -> None:
        """Remember (or forget) that ``instance`` counts viewers of ``stream_ids`` (one
        command for them all)."""
        if not stream_ids:
            return
        key = keys.frontend_streams_key(instance)
        if watching:
            await self.redis.sadd(key, *stream_ids)
        else:
            await self.redis.srem(key, *stream_ids)

    async def reap(self, instance: str, on_change: Callable[[int, int], None] | None = None) -> int:
        """Remove a dead front-end's counts from every stream it counted (one front-end
        does it: a lock); how many streams. Their totals are published and their crossings
        to zero queued, as for any change."""
        if not await self.redis.set(keys.reap_lock_key(instance), "1", nx=True, px=60_000):
            return 0
        key = keys.frontend_streams_key(instance)
        streams = sorted((_text(s) for s in await self.redis.smembers(key)), key=keys.outbox_key)
        # in rounds, as a flush writes: one at a time, a dashboard front-end's 50,000
        # streams took 50,000 round trips to reap
        for i in range(0, len(streams), BATCH):
            batch = streams[i : i + BATCH]
            changes = await self.set_many("", [(s, 0, ()) for s in batch], dead=[instance])
            for old, new in changes:
                if old != new and on_change is not None:
                    on_change(old, new)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(key)
            pipe.zrem(keys.FRONTENDS_KEY, instance)
            await pipe.execute()
        return len(streams)

    async def leave(self, instance: str) -> None:
        """A front-end that stops cleanly: its heartbeat goes (its counts went to zero as
        its viewers left)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(keys.frontend_streams_key(instance))
            pipe.zrem(keys.FRONTENDS_KEY, instance)
            await pipe.execute()
