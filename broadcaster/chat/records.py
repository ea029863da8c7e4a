"""Chats: which generation is a chat's latest, the assistant message it writes, and the
UI messages it was started with (``keys.chat_key``).

A chat expires with its latest generation: its record's TTL is set, at each submit, to
the longest a generation can live (idle, then ended), and a record whose generation has
expired counts as no chat at all (``chat_routes``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from broadcaster.core import keys
from broadcaster.core.connection import publish_target
from broadcaster.core.durability import Durability
from broadcaster.core.eventlog import script


@dataclass(frozen=True, slots=True)
class ChatRecord:
    generation: str
    message_id: str
    messages: list[dict[str, Any]]


class Chats:
    def __init__(self, redis: Redis, ttl: int, durability: Durability | None = None) -> None:
        self.redis = redis
        self.ttl = ttl
        self.durability = durability or Durability(redis)
        """When a chat's writes are acknowledged (``core/durability.py``)."""
        self._submit = redis.register_script(script("chat_submit.lua", "broadcaster.chat"))
        self._enqueue = redis.register_script(script("chat_enqueue.lua", "broadcaster.chat"))

    async def enqueue(self, chat_id: str, entry: dict[str, Any], limit: int) -> int:
        """Add a message to the chat's queue; its position (1: next), or 0 when the queue
        already holds ``limit``."""
        raw = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
        position = int(
            await self.durability.script(
                self._enqueue, [keys.chat_queue_key(chat_id)], [raw, limit, self.ttl]
            )
        )
        if position:
            await self.pending(chat_id)
        return position

    async def pending(self, chat_id: str) -> None:
        """Tell the pump the chat has something waiting (and wake it: ``chat.pump``)."""
        await self.durability.command(
            keys.CHATS_PENDING_KEY, "ZADD", keys.CHATS_PENDING_KEY, time.time(), chat_id
        )
        publish, db = publish_target(self.redis)
        channel, message = keys.wake_channel(chat_id, db), f"chat {chat_id}"
        if publish == "SPUBLISH":
            await self.redis.spublish(channel, message)
        else:
            await self.redis.publish(channel, message)

    async def queued(self, chat_id: str) -> list[dict[str, Any]]:
        raw = await self.redis.lrange(keys.chat_queue_key(chat_id), 0, -1)
        return [json.loads(item) for item in raw]

    async def steer(self, chat_id: str, generation: str, message: dict[str, Any]) -> None:
        """Hand a message to the running ``generation`` for its next step."""
        raw = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        key = keys.steer_key(generation)
        if self.durability.waits:  # MULTI on the committer's connection, its WAIT after
            await self.durability.run(
                key, [("MULTI",), ("RPUSH", key, raw), ("EXPIRE", key, self.ttl), ("EXEC",)]
            )
        else:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, raw)
                pipe.expire(key, self.ttl)
                await pipe.execute()
        await self.pending(chat_id)

    async def get(self, chat_id: str) -> ChatRecord | None:
        raw = await self.redis.hmget(keys.chat_key(chat_id), "generation", "message_id", "messages")
        generation, message_id, messages = cast(list[bytes | None], raw)
        if not generation:
            return None
        return ChatRecord(
            generation.decode(),
            (message_id or b"").decode(),
            json.loads(messages) if messages else [],
        )

    async def submit(
        self,
        chat_id: str,
        seen: str | None,
        record: ChatRecord,
    ) -> bool:
        """Make ``record`` the chat's latest generation, if the chat's generation is still
        ``seen`` (None: the chat had none); False if another submit came first."""
        messages = json.dumps(record.messages, ensure_ascii=False, separators=(",", ":"))
        done = await self.durability.script(
            self._submit,
            [keys.chat_key(chat_id)],
            [seen or "", record.generation, record.message_id, messages, self.ttl],
        )
        return bool(done)

    async def forget(self, chat_id: str) -> None:
        """Drop the record of a chat whose generation expired."""
        await self.redis.delete(keys.chat_key(chat_id))
