"""Chats: which generation is a chat's latest, the assistant message it writes, its
history (``keys.chat_key``, ``keys.chat_history_key``), its owner, and how many of its
turns are settled (their answers in the history list, their webhooks queued:
``chat/settle.py``).

How long a chat lives is the deployment's: ``retention`` seconds after its last change
(None: as long as its latest generation can, idle then ended; 0: until it is deleted).
Every write of the record sets it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from pydantic import ValidationError
from redis.asyncio import Redis

from broadcaster.chat.convert import UIMessage, model_entry
from broadcaster.core import keys
from broadcaster.core.connection import publish_wake
from broadcaster.core.durability import Durability
from broadcaster.core.eventlog import script
from broadcaster.generations.request import RequestInvalid

GENERATION_PREFIX_HEX = 16
"""Hex digits of the chat id's hash that begin each of its generations' ids."""

SETTLE_AFTER_MS = 60_000
"""When a front-end looks at a chat whose turn started, if no end woke one before."""

_FIELDS = (
    "generation",
    "message_id",
    "messages",
    "turn",
    "owner",
    "settled",
    "version",
    "status",
    "title",
    "updated_at",
    "created_at",
)


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
    """The latest generation; empty for a chat seeded and not answered since."""
    message_id: str
    messages: list[dict[str, Any]]
    turn: int = 0
    """The chat's turns so far (``keys.chat_turns_key``); 0 for a record not read."""
    legacy: bool = False
    """Its messages are the one JSON field of a record written before the history list."""
    owner: str = ""
    """Who made it (``chat/owners.py``); empty for a chat of an open deployment."""
    settled: int = 0
    """Its turns settled so far: the latest's answer is in the history list once
    ``settled == turn``."""
    version: int = 0
    status: str = ""
    """How its latest settled turn ended (a generation's status)."""
    title: str = ""
    updated_at: int = 0
    created_at: int = 0

    @property
    def answered(self) -> bool:
        """Whether the history list holds the chat whole: its latest answer settled, or
        none to wait for."""
        return not self.generation or self.settled >= self.turn


@dataclass(frozen=True, slots=True)
class ChatEnd:
    """The end of a chat's record (``Chats.end``): the record, its history list's length,
    whether its model list keeps step, its last messages and some ids' positions."""

    record: ChatRecord | None
    length: int
    stepped: bool
    last: list[dict[str, Any]]
    places: dict[str, int]


@dataclass(frozen=True, slots=True)
class NewTurn:
    """What a submit makes the chat's latest: its generation, the assistant message it
    writes, the messages it starts with, the chat's owner (kept only by the submit that
    creates the chat) and the title of a chat it creates."""

    generation: str
    message_id: str
    messages: list[dict[str, Any]]
    owner: str = ""
    title: str = ""
    keep: int = -1
    """The history list's messages that stay, ``messages`` pushed after them (-1: the
    list becomes ``messages``)."""
    starter: dict[str, Any] | None = None
    """The user message the turn answers (None: the last of ``messages``)."""


Kept = Callable[[list[dict[str, Any]]], Awaitable[list[tuple[bytes, bytes]]]]
"""How messages become what the record keeps of each (``kept_as``)."""


def kept_as(messages: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    """Each message as the record keeps it: its JSON, and its model turns'
    (``model_turns``), as the scripts take them (bytes: Redis's client then copies
    them as they are)."""
    return [(message_json(m).encode(), model_turns(m).encode()) for m in messages]


async def kept_here(messages: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    """``kept_as`` where the caller runs: the default, for a process with no pool (a
    front-end encodes many off its event loop: ``http/offloop.py``)."""
    return kept_as(messages)


Decode = Callable[[list[bytes]], Awaitable[list[dict[str, Any]]]]
"""How a whole history list's items become messages (``Chats.decode``)."""


async def decode_here(items: list[bytes]) -> list[dict[str, Any]]:
    """The items decoded where the caller runs: the default, for a process with no pool
    (a front-end decodes a large history off its event loop: ``http/offloop.py``)."""
    return [json.loads(item) for item in items]


class SeedRefused(Exception):
    """A chat that exists was not seeded: ``found`` names why (``exists``: no version was
    named, ``version``: another version was)."""

    def __init__(self, found: str) -> None:
        super().__init__(found)
        self.found = found


class Chats:
    def __init__(
        self,
        redis: Redis,
        ttl: int,
        durability: Durability | None = None,
        *,
        retention: int | None = None,
        decode: Decode = decode_here,
        kept: Kept = kept_here,
    ) -> None:
        self.redis = redis
        self.ttl = ttl
        """How long what waits for a turn lives (queued messages, steering): as long as
        a generation can."""
        self.retention = ttl if retention is None else retention
        """How long a chat's record lives after its last change (0: until deleted)."""
        self.durability = durability or Durability(redis)
        """When a chat's writes are acknowledged (``core/durability.py``)."""
        self.decode = decode
        """What decodes a history read whole (``get``)."""
        self.kept = kept
        """What encodes the messages a submit or a seed writes, with their model turns."""
        self.on_turn: Callable[[str, int, NewTurn], Awaitable[None]] | None = None
        """Told of each turn a submit starts (its chat, number and turn): the owner's
        list and lifecycle feed (``chat/owners.py``)."""
        self._submit = redis.register_script(chat_script("chat_submit.lua"))
        self._enqueue = redis.register_script(script("chat_enqueue.lua", "broadcaster.chat"))
        self._settle = redis.register_script(script("chat_settle.lua", "broadcaster.chat"))
        self._seed = redis.register_script(chat_script("chat_seed.lua"))

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
        await publish_wake(self.redis, chat_id, message)

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
        if not whole:
            raw = await self.redis.hmget(keys.chat_key(chat_id), *_FIELDS)
            return _record(cast(list[bytes | None], raw))
        # One transaction: a turn settled between two reads would put its answer in the
        # list while the record read before says it is still to be folded in.
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(keys.chat_key(chat_id), *_FIELDS)
            pipe.lrange(keys.chat_history_key(chat_id), 0, -1)
            raw, items = await pipe.execute()
        record = _record(cast(list[bytes | None], raw))
        if record is None or record.legacy:
            return record
        return dataclasses.replace(record, messages=await self.decode(cast(list[bytes], items)))

    async def many(self, chat_ids: list[str]) -> list[ChatRecord | None]:
        """The records of ``chat_ids`` (no messages), in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for chat_id in chat_ids:
                pipe.hmget(keys.chat_key(chat_id), *_FIELDS)
            replies = await pipe.execute()
        return [_record(cast(list[bytes | None], raw)) for raw in replies]

    async def history_end(self, chat_id: str) -> tuple[int, list[dict[str, Any]]]:
        """The history list's length and its last message (none if empty): one round
        trip."""
        _, length, last = await self.tail(chat_id)
        return length, last

    async def tail(self, chat_id: str) -> tuple[ChatRecord | None, int, list[dict[str, Any]]]:
        """The chat's record (no messages), its history list's length and last message,
        read in one transaction (so the record says whether that message is its latest
        answer, settled, or the one the answer continues)."""
        key = keys.chat_history_key(chat_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(keys.chat_key(chat_id), *_FIELDS)
            pipe.llen(key)
            pipe.lrange(key, -1, -1)
            raw, length, last = await pipe.execute()
        record = _record(cast(list[bytes | None], raw))
        return record, int(length), [json.loads(item) for item in last]

    async def end(self, chat_id: str, count: int, ids: list[str]) -> ChatEnd:
        """The chat's record (no messages), its history list's last ``count`` messages,
        whether its model list keeps step with it, and where each of ``ids`` is in it:
        read in one transaction, whatever the chat's length."""
        history = keys.chat_history_key(chat_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(keys.chat_key(chat_id), *_FIELDS)
            pipe.llen(history)
            pipe.llen(keys.chat_model_key(chat_id))
            pipe.lrange(history, -count, -1)
            pipe.hmget(keys.chat_positions_key(chat_id), *ids)
            raw, length, turns, last, places = await pipe.execute()
        return ChatEnd(
            _record(cast(list[bytes | None], raw)),
            int(length),
            int(length) == int(turns),
            [json.loads(item) for item in last],
            {i: int(p) for i, p in zip(ids, places, strict=True) if p is not None},
        )

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

    async def submit(self, chat_id: str, seen: str | None, new: NewTurn) -> bool:
        """Make ``new`` the chat's latest generation (its next turn), if the chat's
        generation is still ``seen`` (None: the chat had none); False if another submit
        came first. The chat is noted unsettled first (a front-end
        settles the turn once its generation ends, ``chat/settle.py``), then its
        followers are woken (``turn <chat id>``)."""
        users = (m for m in reversed(new.messages) if m.get("role") == "user")
        starter = new.starter or next(users, None)
        turn = _compact({"generation": new.generation, "message": starter})
        args: list[Any] = [seen or "", new.generation, new.message_id, self.retention, turn]
        args += [new.owner, new.title, new.keep]
        args += await self._messages(new.messages)
        await self.unsettled(chat_id, SETTLE_AFTER_MS)
        await self.redis.hset(keys.meta_key(new.generation), "chat", chat_id)
        number = int(await self.durability.script(self._submit, _chat_keys(chat_id), args))
        if number:
            await self._publish_wake(chat_id, f"turn {chat_id}")
            if self.on_turn is not None:
                await self.on_turn(chat_id, number, new)
        return bool(number)

    async def unsettled(self, chat_id: str, after_ms: int) -> None:
        """Have a front-end look at the chat's turns ``after_ms`` from now (sooner if
        an end wakes one)."""
        due = int(time.time() * 1000) + after_ms
        key = keys.CHATS_UNSETTLED_KEY
        await self.durability.command(key, "ZADD", key, due, chat_id)

    async def settle(self, chat_id: str, turn: int, generation: str, end: TurnEnd) -> int:
        """Settle turn ``turn`` (``chat_settle.lua``): 1 settled here, 0 already, -1 an
        earlier turn first."""
        args = [turn, generation, end.answer, end.answer_id, end.status, end.hook, end.url]
        args += [end.data, self.retention, keys.OUTBOX_MAX_LEN, chat_id, end.turns]
        chat_keys = [*_chat_keys(chat_id), keys.outbox_key(chat_id)]
        return int(await self.durability.script(self._settle, chat_keys, args))

    async def seed(
        self,
        chat_id: str,
        messages: list[dict[str, Any]],
        *,
        owner: str,
        title: str,
        version: str | None,
    ) -> int:
        """The chat's history set to ``messages`` (``chat_seed.lua``); its new version, or
        ``SeedRefused``."""
        args: list[Any] = [version or "", owner, title, self.retention]
        args += await self._messages(messages)
        found = int(await self.durability.script(self._seed, _chat_keys(chat_id), args))
        if found < 0:
            raise SeedRefused("exists" if found == -1 else "version")
        return found

    async def _messages(self, messages: list[dict[str, Any]]) -> list[str | bytes]:
        """Each message's id, JSON and model turns' JSON, as the scripts take them."""
        args: list[str | bytes] = []
        for message, (raw, turn) in zip(messages, await self.kept(messages), strict=True):
            args += [str(message.get("id", "")), raw, turn]
        return args

    async def generations(self, chat_id: str) -> list[str]:
        """The generations of the chat's turns (its steering and queued ones aside)."""
        raw = await self.redis.hvals(keys.chat_turns_key(chat_id))
        return [str(json.loads(item).get("generation")) for item in raw]

    async def forget(self, chat_id: str) -> None:
        """Drop the chat's record, its queue and its settling."""
        key = keys.CHATS_UNSETTLED_KEY
        await self.redis.delete(*_chat_keys(chat_id), keys.chat_queue_key(chat_id))
        await self.durability.command(key, "ZREM", key, chat_id)


@dataclass(frozen=True, slots=True)
class TurnEnd:
    """What settling a turn writes: the answer for the history list (JSON, '' for none)
    and its id, the chat's status, and its webhook (receivers, URL, data JSON)."""

    answer: str
    answer_id: str
    status: str
    hook: str = ""
    url: str = ""
    data: str = ""
    turns: str = ""
    """The answer's model turns (``model_turns``), for the model list beside the history."""


def _record(raw: list[bytes | None]) -> ChatRecord | None:
    found = dict(zip(_FIELDS, ((v or b"").decode() for v in raw), strict=True))
    if not found["generation"] and not found["version"]:
        return None
    legacy = raw[_FIELDS.index("messages")] is not None
    number = {k: int(found[k] or 0) for k in ("turn", "settled", "version")}
    times = {k: int(found[k] or 0) for k in ("updated_at", "created_at")}
    return ChatRecord(
        found["generation"],
        found["message_id"],
        json.loads(found["messages"]) if legacy else [],
        legacy=legacy,
        owner=found["owner"],
        status=found["status"],
        title=found["title"],
        **number,
        **times,
    )


def _chat_keys(chat_id: str) -> list[str]:
    """The chat's keys, in the order its scripts take them (one slot)."""
    return [
        keys.chat_key(chat_id),
        keys.chat_history_key(chat_id),
        keys.chat_positions_key(chat_id),
        keys.chat_turns_key(chat_id),
        keys.chat_model_key(chat_id),
    ]


def chat_script(name: str) -> str:
    """A chat script, after what they share (``chat_lib.lua``)."""
    return script("chat_lib.lua", "broadcaster.chat") + "\n" + script(name, "broadcaster.chat")


def model_turns(message: dict[str, Any]) -> str:
    """A UI message's model turns as the model list keeps them (``convert.model_entry``);
    one that does not convert is kept as why, for the answer that would send it."""
    try:
        entry = model_entry(0, UIMessage.model_validate(message))
    except (RequestInvalid, ValidationError) as exc:
        reason = exc.message if isinstance(exc, RequestInvalid) else "not a UI message"
        entry = {"i": str(message.get("id", "")), "r": message.get("role"), "e": reason}
    return _compact(entry)


def message_json(message: dict[str, Any]) -> str:
    """A message's JSON as the history list keeps it."""
    return _compact(message)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def title_of(messages: list[dict[str, Any]]) -> str:
    """A chat's title: the start of its first user message's text (at most 80
    characters, on one line); empty when it has none."""
    for message in messages:
        if message.get("role") != "user":
            continue
        texts = [p.get("text") for p in message.get("parts") or [] if isinstance(p, dict)]
        text = " ".join(" ".join(t.split()) for t in texts if isinstance(t, str) and t.strip())
        if text:
            return text if len(text) <= 80 else text[:79].rstrip() + "…"
    return ""
