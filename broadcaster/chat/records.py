"""Chats: which generation is a chat's latest, the assistant message it writes, and the
UI messages it was started with (``keys.chat_key``).

A chat expires with its latest generation: its record's TTL is set, at each submit, to
the longest a generation can live (idle, then ended), and a record whose generation has
expired counts as no chat at all (``chat_routes``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from broadcaster.core import keys
from broadcaster.core.connection import publish_target
from broadcaster.core.durability import Durability
from broadcaster.core.eventlog import script

GENERATION_PREFIX_HEX = 16
"""Hex digits of the chat id's hash that begin each of its generations' ids."""


def generation_prefix(chat_id: str) -> str:
    """What every generation id of chat ``chat_id`` begins with: ``c``, 16 hex digits of
    the chat id's SHA-256, ``_``. A hash, not the id itself: a chat id may take all 64
    characters of a stream id, and one chat's id may begin another's (``a`` and ``a-b``).
    ``GET /v1/events?chat=<id>`` follows this prefix."""
    digest = hashlib.sha256(chat_id.encode()).hexdigest()[:GENERATION_PREFIX_HEX]
    return f"c{digest}_"


def generation_id(chat_id: str) -> str:
    """A new generation id for chat ``chat_id``: its prefix, then 128 random bits
    (URL-safe, 22 characters): 40 characters in all."""
    return generation_prefix(chat_id) + secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class ChatRecord:
    generation: str
    message_id: str
    messages: list[dict[str, Any]]
    turn: int = 0
    """The chat's turns so far (``keys.chat_turns_key``); 0 for a record not read."""
    legacy: bool = False
    """Its messages are the one JSON field of a record written before the history list."""


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
        await self._publish_wake(chat_id, f"chat {chat_id}")

    async def _publish_wake(self, chat_id: str, message: str) -> None:
        publish, db = publish_target(self.redis)
        channel = keys.wake_channel(chat_id, db)
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

    async def get(self, chat_id: str, *, whole: bool = True) -> ChatRecord | None:
        """The chat's record; with ``whole`` its messages too (the history list read
        whole: a submit's and the pump's need), else none (``messages`` empty: the routes
        that only need its generation, and ``page``, which reads a page)."""
        raw = await self.redis.hmget(
            keys.chat_key(chat_id), "generation", "message_id", "messages", "turn"
        )
        generation, message_id, legacy, turn = cast(list[bytes | None], raw)
        if not generation:
            return None
        messages: list[dict[str, Any]] = []
        if legacy:  # a record written before the history list: its messages in one field
            messages = json.loads(legacy)
        elif whole:
            items = await self.redis.lrange(keys.chat_history_key(chat_id), 0, -1)
            messages = [json.loads(item) for item in items]
        return ChatRecord(
            generation.decode(),
            (message_id or b"").decode(),
            messages,
            int(turn or 0),
            legacy is not None,
        )

    async def history_end(self, chat_id: str) -> tuple[int, list[dict[str, Any]]]:
        """The history list's length and its last message (none if empty): one round
        trip."""
        key = keys.chat_history_key(chat_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen(key)
            pipe.lrange(key, -1, -1)
            length, last = await pipe.execute()
        return int(length), [json.loads(item) for item in last]

    async def history_range(self, chat_id: str, start: int, stop: int) -> list[dict[str, Any]]:
        """The history list's messages ``start`` to ``stop`` (exclusive)."""
        if stop <= start:
            return []
        items = await self.redis.lrange(keys.chat_history_key(chat_id), start, stop - 1)
        return [json.loads(item) for item in items]

    async def position(self, chat_id: str, message_id: str) -> int | None:
        """The index of message ``message_id`` in the history list; None if not there."""
        raw = await self.redis.hget(keys.chat_positions_key(chat_id), message_id)
        return None if raw is None else int(raw)

    async def turn(self, chat_id: str, number: int) -> dict[str, Any] | None:
        """Turn ``number`` of the chat: ``{generation, message}``; None if no such turn."""
        raw = await self.redis.hget(keys.chat_turns_key(chat_id), str(number))
        return None if raw is None else cast(dict[str, Any], json.loads(raw))

    async def submit(
        self,
        chat_id: str,
        seen: str | None,
        record: ChatRecord,
    ) -> bool:
        """Make ``record`` the chat's latest generation (its next turn), if the chat's
        generation is still ``seen`` (None: the chat had none); False if another submit
        came first. Then the chat's followers are woken (``turn <chat id>``)."""
        starter = next((m for m in reversed(record.messages) if m.get("role") == "user"), None)
        turn = _compact({"generation": record.generation, "message": starter})
        args: list[Any] = [seen or "", record.generation, record.message_id, self.ttl, turn]
        for message in record.messages:
            args += [str(message.get("id", "")), _compact(message)]
        done = await self.durability.script(self._submit, _chat_keys(chat_id), args)
        if done:
            await self._publish_wake(chat_id, f"turn {chat_id}")
        return bool(done)

    async def forget(self, chat_id: str) -> None:
        """Drop the record of a chat whose generation expired."""
        await self.redis.delete(*_chat_keys(chat_id))


def _chat_keys(chat_id: str) -> list[str]:
    """The chat's keys, in the order ``chat_submit.lua`` takes them (one slot)."""
    return [
        keys.chat_key(chat_id),
        keys.chat_history_key(chat_id),
        keys.chat_positions_key(chat_id),
        keys.chat_turns_key(chat_id),
    ]


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
