"""What a chat's owner sees across its chats: the list of them (``GET /v1/chats``), and
one feed of their lifecycle (``GET /v1/chats/events``).

An owner is who made the chat: ``sub:<sub>`` for a token's subject, ``key:<name>`` for
an API key (its non-secret name), empty on an open deployment. Each owner has

- an index (``keys.owner_chats_key``): its chats, scored by when each last changed;
- a lifecycle feed: a job-progress stream of its own (``feed_id``, a name of the form the
  server keeps for its own streams, which no producer may create), to which the
  front-ends append a notice when one of its chats starts a turn
  (``chat-turn-started``), waits for a person (``chat-waiting``), ends a turn
  (``chat-turn-finished``) or is deleted (``chat-deleted``): a handful per turn,
  never one per token. It is read as any stream is: resumable with ``Last-Event-ID``,
  fanned out by the hub.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from broadcaster.chat.records import NewTurn
from broadcaster.core import keys
from broadcaster.core.durability import Durability
from broadcaster.core.eventlog import EventLog

OPENED = "chat-feed-opened"
"""The first notice of a feed nobody's chat wrote in yet: a feed is a stream, and a
stream exists from its first event."""


def owner_hash(owner: str) -> str:
    """32 hex digits naming an owner in Redis keys (what it is stays out of them)."""
    return hashlib.sha256(b"owner\0" + owner.encode()).hexdigest()[:32]


def feed_id(owner: str) -> str:
    """The stream id of an owner's lifecycle feed: ``c``, 16 hex digits, ``_chats``."""
    return f"c{owner_hash(owner)[:16]}_chats"


@dataclass(frozen=True, slots=True)
class Listed:
    """A chat of an owner's list: its id, and when it last changed (Unix ms)."""

    chat_id: str
    updated_ms: int


class Owners:
    """The owners' indexes and lifecycle feeds."""

    def __init__(self, redis: Redis, event_log: EventLog, durability: Durability | None = None):
        self.redis = redis
        self.log = event_log
        self.durability = durability or Durability(redis)

    async def touch(self, owner: str, chat_id: str) -> None:
        """The chat changed now: first in its owner's list."""
        key = keys.owner_chats_key(owner_hash(owner))
        await self.durability.command(key, "ZADD", key, int(time.time() * 1000), chat_id)

    async def remove(self, owner: str, chat_id: str) -> None:
        key = keys.owner_chats_key(owner_hash(owner))
        await self.durability.command(key, "ZREM", key, chat_id)

    async def page(self, owner: str, limit: int, before: Listed | None) -> list[Listed]:
        """Up to ``limit`` of the owner's chats, newest first, after ``before`` (the last
        of the page before; None: from the newest)."""
        key = keys.owner_chats_key(owner_hash(owner))
        top: Any = "+inf" if before is None else before.updated_ms
        found: list[Listed] = []
        offset = 0
        while len(found) < limit:
            want = limit - len(found) + 1
            raw = await self.redis.zrevrangebyscore(
                key, top, "-inf", start=offset, num=want, withscores=True
            )
            rows = cast(list[tuple[bytes, float]], raw)
            for member, score in rows:
                listed = Listed(member.decode(), int(score))
                if before is None or _after(listed, before):
                    found.append(listed)
            if len(rows) < want:
                break
            offset += len(rows)
        return found[:limit]

    async def notice(self, owner: str, kind: str, **data: Any) -> None:
        """Append a notice (``chat-<kind>``) to the owner's lifecycle feed."""
        event = {"type": f"chat-{kind}", **data, "at": int(time.time() * 1000)}
        await self.log.append(feed_id(owner), [event], kind="feed")

    async def turn_started(self, chat_id: str, turn: int, new: NewTurn) -> None:
        """A submit started the chat's turn ``turn`` (``Chats.on_turn``)."""
        await self.touch(new.owner, chat_id)
        await self.notice(
            new.owner, "turn-started", chatId=chat_id, generationId=new.generation, turn=turn
        )

    async def opened(self, owner: str) -> str:
        """The owner's feed, made if it is not yet (its first notice: ``OPENED``)."""
        stream = feed_id(owner)
        if await self.log.info(stream) is None:
            await self.log.append(stream, [{"type": OPENED}], kind="feed")
        return stream


def _after(listed: Listed, before: Listed) -> bool:
    """Whether ``listed`` comes after ``before`` in a list newest first (ties by id,
    descending, as ``ZREVRANGEBYSCORE`` orders them)."""
    if listed.updated_ms != before.updated_ms:
        return listed.updated_ms < before.updated_ms
    return listed.chat_id < before.chat_id
