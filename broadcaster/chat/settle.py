"""Settling a chat's turns once their answers end: each answer folded into the chat's
history list (so that the record holds the chat whole, and outlives the generations it
was made of), its ``chat.turn.finished`` webhook queued (whatever ended it: a finish, an
error, a stop), and a notice in its owner's lifecycle feed. A turn is settled once:
``chat_settle.lua`` does it in one atomic step, conditional on the turns before it.

A chat whose turn starts is noted in ``keys.CHATS_UNSETTLED_KEY`` first. Nothing polls:
the end of a chat's generation wakes every front-end (``end <id>`` on the wake
channels), and the one that takes the chat's settling (``keys.chat_settling_key``, held
a while) folds the answer; the others do nothing. Besides, every ``SWEEP_EVERY``
seconds, and when pushes may have been missed, each front-end looks at the chats whose
time came (``ZRANGEBYSCORE``): one whose answer still runs is looked at again later. A
waiting generation's push (``wait <ms> <id>``) puts one ``chat-waiting`` notice in its
owner's feed (``keys.chat_noticed_key`` says which front-end does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, cast

from broadcaster.chat.owners import Owners
from broadcaster.chat.records import SETTLE_AFTER_MS, ChatRecord, Chats, TurnEnd, model_turns
from broadcaster.chat.ui_message import ChatMessages
from broadcaster.core import contain, keys, names
from broadcaster.core.connection import REDIS_ERRORS
from broadcaster.core.eventlog import EventLog

log = logging.getLogger("broadcaster.chatsettle")

SWEEP_EVERY = 60.0
"""Seconds between the looks nothing woke: what a lost push can cost, at most."""
HOLD_MS = 30_000
"""How long a front-end holds a chat's settling (a front-end that died holding it)."""
SWEEP_BATCH = 100
"""Chats looked at per round of a sweep."""
WOKEN_MAX = 10_000
"""Ends and waits heard and not yet looked at, at most (the sweep finds the rest)."""
TURNS_AT_ONCE = 32
"""Turns settled in one look at a chat, at most (the next look goes on)."""
WEBHOOK = "chat.turn.finished"
_META = ("status", "ended", "usage", "error", "webhook", "webhook_url", "chat")


@dataclass(frozen=True, slots=True)
class Ended:
    """A turn's generation, as its end left it."""

    generation: str
    status: str
    usage: dict[str, int] | None
    error: str | None
    hook: str
    url: str


class TurnSettler:
    """``run`` settles what the wake channels and the sweeps bring, until cancelled."""

    def __init__(self, chats: Chats, event_log: EventLog, owners: Owners) -> None:
        self.chats = chats
        self.log = event_log
        self.owners = owners
        self.me = secrets.token_hex(8)
        self.settled = 0
        self._ends: dict[str, None] = {}
        self._waits: dict[tuple[str, str], None] = {}
        self._wake = asyncio.Event()
        self._sweep = True

    def woken(self, kind: str, arg: str) -> None:
        """``end <generation>`` or ``wait <ms> <generation>`` of a chat's generation."""
        if kind == "end" and names.is_reserved(arg) and len(self._ends) < WOKEN_MAX:
            self._ends[arg] = None
            self._wake.set()
        elif kind == "wait":
            deadline, _, generation = arg.partition(" ")
            if names.is_reserved(generation) and len(self._waits) < WOKEN_MAX:
                self._waits[(generation, deadline)] = None
                self._wake.set()

    def missed(self) -> None:
        """Pushes may have been missed: a sweep now."""
        self._sweep = True
        self._wake.set()

    async def run(self, every: float = SWEEP_EVERY) -> None:
        outage = contain.Outage("settling chats' turns", log)
        last_sweep = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(outage.pause(every)):
                    await self._wake.wait()
            self._wake.clear()
            now = asyncio.get_running_loop().time()
            if now - last_sweep >= every:
                self._sweep = True
            try:
                await self._round()
                if self._sweep:
                    self._sweep = False
                    last_sweep = now
                    await self.sweep()
                outage.ok()
            except REDIS_ERRORS as exc:
                outage.failed(exc)
                self._sweep = True
                self._wake.set()
            except Exception:
                contain.loop_failed("chat-settle", log)

    async def _round(self) -> None:
        ends, self._ends = list(self._ends), {}
        waits, self._waits = list(self._waits), {}
        for generation in ends:
            chat_id = await self._chat_of(generation)
            if chat_id is not None:
                await self.settle(chat_id)
        for generation, deadline in waits:
            await self._waiting(generation, deadline)

    async def _chat_of(self, generation: str) -> str | None:
        raw = await self.log.redis.hget(keys.meta_key(generation), "chat")
        return None if raw is None else cast(bytes, raw).decode()

    async def sweep(self) -> int:
        """Look at every chat whose time came; how many turns were settled."""
        done = 0
        key = keys.CHATS_UNSETTLED_KEY
        while True:
            now = int(time.time() * 1000)
            due = await self.log.redis.zrangebyscore(key, "-inf", now, start=0, num=SWEEP_BATCH)
            for raw in cast(list[bytes], due):
                done += await self.settle(raw.decode())
            if len(due) < SWEEP_BATCH:
                return done

    async def settle(self, chat_id: str) -> int:
        """Settle the chat's turns whose answers ended, unless another front-end is at
        it; how many were settled here."""
        hold = keys.chat_settling_key(chat_id)
        if not await self.log.redis.set(hold, self.me, nx=True, px=HOLD_MS):
            return 0
        try:
            return await self._settle(chat_id)
        finally:
            with contextlib.suppress(*REDIS_ERRORS):
                await self.log.redis.delete(hold)

    async def _settle(self, chat_id: str) -> int:
        record = await self.chats.get(chat_id, whole=False)
        if record is None:
            await self.chats.forget(chat_id)
            return 0
        done = 0
        for turn in range(record.settled + 1, min(record.turn, record.settled + TURNS_AT_ONCE) + 1):
            found = await self.chats.turn(chat_id, turn)
            ended = await self._ended(str((found or {}).get("generation") or ""))
            if ended is None:  # it runs (or waits for a person): its end wakes us
                await self.chats.unsettled(chat_id, SETTLE_AFTER_MS)
                return done
            user = (found or {}).get("message")
            end = await self._end(chat_id, record, turn, ended, user)
            if await self.chats.settle(chat_id, turn, ended.generation, end) == 1:
                done += 1
                self.settled += 1
                await self._settled(record, chat_id, turn, ended)
        if record.turn <= record.settled + TURNS_AT_ONCE:
            key = keys.CHATS_UNSETTLED_KEY
            await self.chats.durability.command(key, "ZREM", key, chat_id)
        else:
            await self.chats.unsettled(chat_id, 0)
        return done

    async def _ended(self, generation: str) -> Ended | None:
        """The turn's generation if it ended (or is gone: nothing is left to wait for);
        None while it runs."""
        if not names.is_stream_id(generation):
            return Ended(generation, "expired", None, None, "", "")
        raw = cast(
            list[bytes | None], await self.log.redis.hmget(keys.meta_key(generation), *_META)
        )
        meta = dict(zip(_META, (v.decode() if v else "" for v in raw), strict=True))
        if not meta["status"]:
            return Ended(generation, "expired", None, None, "", "")
        if not meta["ended"]:
            return None
        usage = json.loads(meta["usage"]) if meta["usage"] else None
        counted = None if usage is None else _usage(usage)
        hook, url = meta["webhook"], meta["webhook_url"]
        return Ended(generation, meta["status"], counted, meta["error"] or None, hook, url)

    async def _end(
        self, chat_id: str, record: ChatRecord, turn: int, ended: Ended, user: Any
    ) -> TurnEnd:
        latest = turn == record.turn and ended.generation == record.generation
        answer, at = await self._answer(chat_id, record, ended.generation, latest)
        data = ""
        if ended.hook:
            spots = [(user, await self._place(chat_id, user) if latest else None), (answer, at)]
            said = [(m, p) for m, p in spots if isinstance(m, dict)]
            data = _compact(
                {
                    "chat_id": chat_id,
                    "owner": record.owner or None,
                    "turn": turn,
                    "generation_id": ended.generation,
                    "status": ended.status,
                    "messages": [m for m, _ in said],
                    "positions": [p for _, p in said],
                    "usage": ended.usage,
                    "error": ended.error,
                }
            )
        kept = _compact(answer) if latest and answer is not None else ""
        answer_id = str(answer.get("id", "")) if answer else ""
        turns = model_turns(answer) if kept and answer is not None else ""
        return TurnEnd(kept, answer_id, ended.status, ended.hook, ended.url, data, turns)

    async def _answer(
        self, chat_id: str, record: ChatRecord, generation: str, latest: bool
    ) -> tuple[dict[str, Any] | None, int | None]:
        """The turn's answer folded from its generation's events, and where the history
        list is to hold it (the latest turn's: it continues the list's last message when
        that is the one it answers, else comes after it; an earlier turn's: nowhere)."""
        if not names.is_stream_id(generation):
            return None, None
        length, last = (await self.chats.history_end(chat_id)) if latest else (0, [])
        folding = ChatMessages(last, record.message_id if latest else "")
        async for page in self.log.read_after(generation, 0):
            for event in page:
                folding.feed(event.json())
        if not (folding.continued or folding.fold.fed):
            return None, None
        at = (length - 1 if folding.continued else length) if latest else None
        return folding.fold.message, at

    async def _place(self, chat_id: str, message: Any) -> int | None:
        """The index of ``message`` in the chat's history list, if it is there."""
        if not isinstance(message, dict):
            return None
        return await self.chats.position(chat_id, str(message.get("id")))

    async def _settled(self, record: ChatRecord, chat_id: str, turn: int, ended: Ended) -> None:
        await self.owners.touch(record.owner, chat_id)
        await self.owners.notice(
            record.owner,
            "turn-finished",
            chatId=chat_id,
            generationId=ended.generation,
            turn=turn,
            status=ended.status,
        )

    async def _waiting(self, generation: str, deadline: str) -> None:
        """One ``chat-waiting`` notice per wait, from the one front-end that notes it."""
        noted = keys.chat_noticed_key(generation, deadline)
        if not await self.log.redis.set(noted, self.me, nx=True, ex=86_400):
            return
        chat_id = await self._chat_of(generation)
        record = None if chat_id is None else await self.chats.get(chat_id, whole=False)
        if record is None or chat_id is None:
            return
        await self.owners.notice(
            record.owner, "waiting", chatId=chat_id, generationId=generation, turn=record.turn
        )


def _usage(usage: dict[str, Any]) -> dict[str, int]:
    return {
        "input_tokens": int(usage.get("input_tokens", 0)),
        "output_tokens": int(usage.get("output_tokens", 0)),
    }


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
