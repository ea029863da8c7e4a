"""The chat pump: a chat's messages that waited for their turn start as soon as its
answer ends.

Two kinds of message wait (``multitask``): a queued one (``enqueue``: its generation was
created when it was sent, and its sender already streams it, empty until it starts), and
steering that the running answer never took because it had no next step (``steer``: the
worker takes steering only before a step's model call). A chat with either is in
``keys.CHATS_PENDING_KEY``. In a round, one front-end at a time (``keys.CHAT_PUMP_LOCK``)
looks at those chats: once the chat's latest generation has ended, the leftover steering
(all of it, one user turn) or else the queue's next message becomes the chat's next
generation, with the chat so far (its messages, and the answer folded from the stream) as
its history, queued for a worker as any submit is. A chat with nothing left leaves the
set.

Nothing polls. A round runs when a push wakes it (``woken``, from the wake channels,
``keys.wake_channel``): ``chat <id>`` when a chat gets something waiting, ``end <id>``
when a generation ends that a pending chat waits on (the append script publishes every
generation's end; the pump remembers which generations its rounds saw pending chats wait
on, and the ones it started). So a queued message starts a few milliseconds after the
answer before it ends, whoever ended it (the worker, a stop, an error). Every front-end
hears every push; the one that holds the lock runs the round, and runs one again after
it if a push came meanwhile. Besides, a round at start-up, after the wake channels were
lost a while (pushes may have been missed: ``missed``), and every ``SAFETY_EVERY``
seconds if any chat waits (one ``EXISTS`` tells): nothing waits for ever if a push is
lost.

A waiting message starts as every generation does (``generations.start.start``), admitted
first. When admission refuses, the message is not dropped: see ``ChatPump._start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

from broadcaster.chat.convert import parse_body, response_message_id, to_request
from broadcaster.chat.messages import so_far
from broadcaster.chat.records import ChatRecord, Chats, NewTurn, generation_id, title_of
from broadcaster.core import contain, keys, tracing
from broadcaster.core.connection import REDIS_ERRORS
from broadcaster.core.eventlog import AppendRefused, EventLog
from broadcaster.core.lock import Lock
from broadcaster.core.logconfig import current_stream
from broadcaster.generations.jobs import JobQueue
from broadcaster.generations.lifecycle import Generations
from broadcaster.generations.request import Defaults, RequestInvalid
from broadcaster.generations.start import Admission, Busy, ProviderUnavailable, start

log = logging.getLogger("broadcaster.chatpump")

BUSY_RETRY_SECONDS = 1.0
"""How long a chat whose waiting message admission refused as busy waits before the pump
tries it again."""
SAFETY_EVERY = 60.0
"""Seconds between the rounds nothing woke: what a lost push can cost, at most."""
LOCK_MS = 2000
"""How long the round's lock outlives a front-end that died in the middle of a round."""
REMEMBERED = 10_000
"""At most this many generations that pending chats wait on are remembered (the oldest
go first: their chats are found again by the next round that was not woken)."""


class ChatPump:
    def __init__(
        self,
        chats: Chats,
        generations: Generations,
        jobs: JobQueue,
        defaults: Defaults,
        new_id: Any,
        *,
        admission: Callable[[], Admission],
    ) -> None:
        self.chats = chats
        self.generations = generations
        self.log: EventLog = generations.log
        self.jobs = jobs
        self.defaults = defaults
        self.new_id = new_id
        self.admission = admission
        self.started = 0
        self.rounds = 0
        self._busy_until: dict[str, float] = {}
        """Chats whose waiting message admission refused as busy, until when."""
        self._waiting_on: dict[str, str] = {}
        """Generations that pending chats wait on -> the chat (bounded: ``REMEMBERED``)."""
        self._wake = asyncio.Event()
        self._in_round = False

    def woken(self, kind: str, arg: str) -> None:
        """A push on the wake channels: ``chat <id>`` (a chat has something waiting) or
        ``end <generation>``; a round follows when it may start something."""
        if kind == "chat" or (kind == "end" and (arg in self._waiting_on or self._in_round)):
            # An end that came during a round may be one that round read too early.
            self._waiting_on.pop(arg, None)
            self._wake.set()

    def missed(self) -> None:
        """Pushes may have been missed (the wake channels were lost): a round."""
        self._wake.set()

    def _remember(self, generation: str, chat_id: str) -> None:
        self._waiting_on.pop(generation, None)
        self._waiting_on[generation] = chat_id
        while len(self._waiting_on) > REMEMBERED:
            del self._waiting_on[next(iter(self._waiting_on))]

    def _wait(self, every: float) -> float:
        """Until the next round nothing wakes: the safety round, or a busy chat's retry."""
        if not self._busy_until:
            return every
        now = asyncio.get_running_loop().time()
        return max(0.0, min(every, min(self._busy_until.values()) - now))

    async def run(self, every: float = SAFETY_EVERY) -> None:
        """Rounds, woken by pushes (and one at once), until cancelled."""
        redis = self.log.redis
        lock = Lock(redis, keys.CHAT_PUMP_LOCK, LOCK_MS)
        outage = contain.Outage("starting chats' waiting messages", log)
        self._wake.set()  # the first round at once: whatever waits already
        while True:
            woken = True
            try:
                async with asyncio.timeout(outage.pause(self._wait(every))):
                    await self._wake.wait()
                    if outage.down:  # woken in an outage: still its backoff first
                        await asyncio.sleep(outage.delay)
            except TimeoutError:
                woken = False
            self._wake.clear()
            try:
                # Unwoken (the safety round), a look first: a round only if a chat waits.
                if not (woken or self._busy_until or await redis.exists(keys.CHATS_PENDING_KEY)):
                    outage.ok()
                    continue
                if await lock.take():
                    # Another front-end holding it heard the same push: it runs again.
                    self._in_round = True
                    try:
                        await self.sweep()
                    finally:
                        self._in_round = False
                        await lock.release()
                outage.ok()
            except REDIS_ERRORS as exc:
                outage.failed(exc)
                self._wake.set()  # once Redis answers: what was pushed meanwhile is lost
            except Exception:
                contain.loop_failed("chat-pump", log)

    async def sweep(self) -> int:
        """Start what waits in every chat whose answer has ended; how many started."""
        raw = cast(list[bytes], await self.log.redis.zrange(keys.CHATS_PENDING_KEY, 0, 199))
        started = 0
        now = asyncio.get_running_loop().time()
        self._busy_until = {c: t for c, t in self._busy_until.items() if t > now}
        self.rounds += 1
        for chat_id in (r.decode(errors="replace") for r in raw):
            if chat_id in self._busy_until:
                continue
            context = current_stream.set(None)
            try:
                started += await self.pump(chat_id)
            except Busy:
                self._busy_until[chat_id] = now + BUSY_RETRY_SECONDS
                log.info("chat %s: a waiting message waits: %s", chat_id, Busy())
            except (RequestInvalid, ProviderUnavailable) as exc:
                log.warning("chat %s: a waiting message cannot be sent: %s", chat_id, exc)
            except REDIS_ERRORS:
                raise
            except Exception:  # this chat's alone: the others' messages still start
                contain.loop_failed("chat-pump", log, f"chat {chat_id}")
            finally:
                current_stream.reset(context)
        self.started += started
        return started

    async def pump(self, chat_id: str) -> int:
        # Every write here goes through the committer (BROADCASTER_DURABILITY): a message
        # taken from a queue, or put back, is acted on only once a failover cannot undo it.
        durability = self.chats.durability
        pending = keys.CHATS_PENDING_KEY
        head = await self.chats.get(chat_id, whole=False)  # the history only if it is free
        if head is None:
            await durability.command(pending, "ZREM", pending, chat_id)
            return 0
        info = await self.log.info(head.generation)
        if info is not None and not info.ended:
            self._remember(head.generation, chat_id)  # its end wakes the pump
            return 0  # its answer runs (or waits for a person): later
        record = await self.chats.get(chat_id)
        if record is None or record.generation != head.generation:
            if record is not None:  # a turn began between the reads: its end wakes it
                self._remember(record.generation, chat_id)
            return 0
        steer = keys.steer_key(record.generation)
        steering = await self._transaction(steer, [("LRANGE", steer, 0, -1), ("DEL", steer)])
        if steering:
            entries = [json.loads(item) for item in steering]
            messages = [e["message"] for e in entries]
            try:
                return await self._start(chat_id, record, messages, None, entries[0].get("fields"))
            except Busy:  # the steering waits for the chat's next answer, as it did
                await self._transaction(
                    steer,
                    [("LPUSH", steer, *reversed(steering)), ("EXPIRE", steer, self.chats.ttl)],
                )
                raise
        queue = keys.chat_queue_key(chat_id)
        raw = await durability.command(queue, "LPOP", queue)
        if raw is None:
            await durability.command(pending, "ZREM", pending, chat_id)
            return 0
        entry = json.loads(cast(bytes, raw))
        try:
            return await self._start(
                chat_id,
                record,
                [entry["message"]],
                entry["generation"],
                entry.get("fields"),
                trace=tracing.parse(entry.get("traceparent")),
            )
        except Busy:  # it stays first in the chat's queue
            await durability.command(queue, "LPUSH", queue, cast(bytes, raw))
            raise
        except (RequestInvalid, ProviderUnavailable) as exc:
            await self._refused(entry["generation"], str(exc))
            raise

    async def _transaction(self, key: str, calls: list[tuple[Any, ...]]) -> Any:
        """``calls`` (on ``key``'s slot) in one ``MULTI``, through the committer when it
        waits; the first call's reply."""
        durability = self.chats.durability
        if durability.waits:  # MULTI on the committer's connection, its WAIT after
            replies = await durability.run(key, [("MULTI",), *calls, ("EXEC",)])
            return replies[-1][0]
        async with self.log.redis.pipeline(transaction=True) as pipe:
            for call in calls:
                pipe.execute_command(*call)
            return (await pipe.execute())[0]

    async def _start(
        self,
        chat_id: str,
        record: ChatRecord,
        new: list[dict[str, Any]],
        generation: str | None,
        fields: dict[str, Any] | None,
        *,
        trace: str | None = None,
    ) -> int:
        """Start ``new`` (a queued message with its generation, or leftover steering, which
        gets one) as the chat's next answer, admitted like any generation
        (``generations.start.start``). ``Busy``: the message keeps its place and the pump
        tries the chat again after ``BUSY_RETRY_SECONDS`` (its sender's stream stays open; no
        queued timeout applies yet). ``ProviderUnavailable``: its stream ends with an
        ``error`` saying so (``_refused``; leftover steering as the chat's next answer), so the
        chat shows the message and why it got no answer."""
        messages = [*await so_far(self.log, record), *new]
        body = {"id": chat_id, "messages": messages, "trigger": "submit-message", **(fields or {})}
        job = to_request(parse_body(body), self.defaults)
        gid = generation or generation_id(chat_id)
        job["ui_message_id"] = response_message_id(parse_body(body).messages, gid)
        job["chat_id"] = chat_id
        if trace is not None:  # the trace of the request that queued the message
            job["traceparent"] = trace
        new_record = NewTurn(gid, job["ui_message_id"], messages, record.owner, title_of(messages))
        swap = partial(self.chats.submit, chat_id, record.generation, new_record)
        try:
            started = await start(
                self.generations,
                self.jobs,
                self.admission(),
                gid,
                job,
                created=generation is not None,
                swap=swap,
            )
        except ProviderUnavailable as exc:
            if generation is None and await self._unanswered(gid, job, swap):
                await self._refused(gid, str(exc))
            raise
        if not started:
            # Another submit started the chat's next answer first: this waits again.
            if generation is not None:
                entry = {"generation": generation, "message": new[0], "fields": fields}
                queue = keys.chat_queue_key(chat_id)
                await self.chats.durability.command(queue, "LPUSH", queue, json.dumps(entry))
            return 0
        self._remember(gid, chat_id)  # what waits after it starts when it ends
        log.info("chat %s: a waiting message starts as generation %s", chat_id, gid)
        return 1

    async def _unanswered(
        self, generation: str, job: dict[str, Any], swap: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Leftover steering that cannot start: created as the chat's next answer, never
        queued (its end is the caller's); False if another submit came first."""
        if not await self.generations.create(generation, job):
            return False
        if await swap():
            return True
        await self.generations.discard(generation)
        return False

    async def _refused(self, generation: str, why: str) -> None:
        """A queued message whose chat no longer converts: its stream says so."""
        with contextlib.suppress(AppendRefused):
            await self.log.append(
                generation,
                [{"type": "error", "errorText": f"this message could not be sent: {why}"}],
                kind="generation",
                meta={"error": why[:500]},
            )
