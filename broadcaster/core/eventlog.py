"""The event log: the only code that knows how a stream is laid out in Redis.

A stream is three keys under one hash tag (``keys.py``): a Redis Stream of events with
ids ``<seq>-0``, a metadata hash, and (for generations) the text so far. Every write is
one Lua script, ``APPEND``: in one round trip, with no livelock between writers, it
checks the stream is not ended, the expected last seq and the owner, then adds the
events with gap-free seqs, so a refused writer changes nothing. Each event also gets a
history tag chaining it to the ones before; the SSE id ``<seq>.<tag>`` lets a resume
detect a history rewritten after a loss (409), while a worker that writes lost events
again byte for byte recreates the same tags. ARCHITECTURE.md, "The write path".
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from broadcaster.core import connection, contain, keys
from broadcaster.core.coalesce import Coalesce
from broadcaster.core.durability import Durability
from broadcaster.core.events import Event, InvalidEvent, dump_batch, malformed


def script(name: str, package: str = "broadcaster.core") -> str:
    """A Lua script of a package's ``scripts/`` folder: every write to a stream is one of
    ``broadcaster.core``'s, and each capability keeps its own beside its storage."""
    return resources.files(package).joinpath("scripts", name).read_text()


ScriptCall = tuple[list[str], list[Any]]
"""A script's keys and arguments."""


async def scripts_pipelined(
    redis: Redis, script_: AsyncScript, calls: list[ScriptCall]
) -> list[Any]:
    """Each call of ``script_``, all in one pipeline: its reply, or its error. A node that
    never ran the script (or flushed it) loads it, and only those calls go again."""
    replies = await _evalsha(redis, script_.sha, calls)
    missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
    if missing:
        await redis.script_load(script_.script)
        again = await _evalsha(redis, script_.sha, [calls[i] for i in missing])
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return replies


async def _evalsha(redis: Redis, sha: str, calls: list[ScriptCall]) -> list[Any]:
    """``EVALSHA`` by name: redis-py's cluster pipeline refuses its ``evalsha`` method
    (and so ``Script`` objects), but routes the command by its keys like any other."""
    async with redis.pipeline(transaction=False) as pipe:
        for script_keys, args in calls:
            pipe.execute_command("EVALSHA", sha, len(script_keys), *script_keys, *args)
        return list(await pipe.execute(raise_on_error=False))


_INFO_FIELDS = ("kind", "seq", "ended", "tag")

UNCLAIMED = "-"
"""The ``owner`` of an append that may happen only while nobody owns the stream."""

PAGE_BYTES = 256 * 1024
FIRST_PAGE = 64
"""Events in a reader's first page (``read_after``): most replays are short."""
"""What one replay page aims to hold, whatever the size of its events."""


class AppendRefused(Exception):
    """Base of the reasons an append changes nothing. ``last_seq`` is the stream's seq."""

    def __init__(self, stream_id: str, last_seq: int, message: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        self.last_seq = last_seq


class StreamEnded(AppendRefused):
    """The stream already has its terminal event."""


class StaleWriter(AppendRefused):
    """The writer expected another last seq, or no longer owns the stream."""


class WrongKind(AppendRefused):
    """A publish to a generation (only its worker appends to it)."""


class StreamNotFound(AppendRefused):
    """The stream does not exist (or expired)."""


class StreamFull(AppendRefused):
    """The stream reached its event or byte limit; only a terminal event is accepted."""


class EventTooLarge(InvalidEvent):
    """One event is over ``max_event_bytes``."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    kind: str
    last_seq: int
    ended: str | None
    tag_at: str | None = None
    """The history tag of the event asked about (``info(at=...)``); None if not asked,
    or if the stream holds no such event."""
    tag: str = ""
    """The history tag of the newest event (``last_seq``); empty before the first."""


_HEX = b"0123456789abcdef"


def _valid_tag(tag: bytes) -> bool:
    """A history tag as the append script writes it: 8 hex digits (or none)."""
    return not tag or (len(tag) == 8 and not tag.strip(_HEX))


def _entry_to_event(entry_id: bytes, fields: dict[bytes, bytes]) -> Event | None:
    """The event an entry holds; None if it cannot be served as it is: an SSE frame of
    its own (a type and data of one line each, a history tag of 8 hex digits or none),
    at an id ``<seq>-0``. The append script writes nothing else; another program
    writing to Redis might."""
    etype = fields.get(b"t")
    data = fields.get(b"d")
    tag = fields.get(b"h", b"")
    if (
        not etype
        or data is None
        or b"\n" in etype
        or b"\r" in etype
        or b"\n" in data
        or b"\r" in data
        or not _valid_tag(tag)
        or not entry_id.endswith(b"-0")
    ):
        return None
    try:
        return Event(int(entry_id[:-2]), etype.decode(), data, tag.decode())
    except (UnicodeDecodeError, ValueError):
        return None


def _malformed(entry_id: bytes, fields: dict[bytes, bytes], stream_id: str) -> Event:
    """The ``error`` served in place of a malformed entry (``events.malformed``), with
    the entry's history tag when it has a valid one; counted and logged."""
    seq = int(entry_id.split(b"-", 1)[0])
    tag = fields.get(b"h", b"")
    what = sorted(k.decode(errors="replace") for k in fields)
    contain.malformed("events", stream_id, seq, f"entry {entry_id!r} with fields {what}")
    return malformed(seq, tag.decode() if _valid_tag(tag) else "")


_Entries = Sequence[tuple[bytes, dict[bytes, bytes]]]


def _append_keys(stream_id: str) -> list[str]:
    """The append script's keys: the stream's, its group's webhook outbox, index and
    waiting set, its steering list, and its group's unsettled set."""
    return [
        *keys.stream_keys(stream_id),
        keys.outbox_key(stream_id),
        keys.names_key(stream_id),
        keys.waiting_key(stream_id),
        keys.steer_key(stream_id),
        keys.unsettled_key(stream_id),
    ]


def _stream_info(reply: Any, entry: list[Any], stream_id: str = "") -> StreamInfo | None:
    kind, seq, ended, tag = cast(list[bytes | None], reply)
    if kind is None:
        return None
    tag_at = entries_to_events(entry, stream_id)[0].tag if entry else None
    return StreamInfo(
        kind.decode(),
        int(seq or 0),
        ended.decode() if ended else None,
        tag_at,
        tag.decode() if tag else "",
    )


def _invalid(status: bytes, stream_id: str) -> InvalidEvent | None:
    """The append script's own refusal of what it must never store (``INVALID``: a name
    that is not a stream id, an event type outside the grammar, data with a line break),
    which the checks here refuse first; None for any other status."""
    if status != b"INVALID":
        return None
    return InvalidEvent(
        f"the append script refused a batch for {stream_id[:80]!r}: its stream name, an "
        "event type or an event's data is not one it stores"
    )


def entries_to_events(entries: _Entries, stream_id: str = "") -> list[Event]:
    """Turn raw ``XRANGE``/``XREAD`` entries into events (the client returns bytes). A
    malformed entry is read as a terminal ``error`` (``events.malformed``), and the
    events end there, as a reader's do at any terminal event."""
    out = []
    for eid, fields in entries:
        event = _entry_to_event(eid, fields)
        if event is None:
            out.append(_malformed(eid, fields, stream_id))
            break
        out.append(event)
    return out


class EventLog:
    """Appends and reads streams. Takes a ``redis.asyncio.Redis`` with ``decode_responses``
    off: event bodies travel as bytes from Redis to the socket without being decoded."""

    def __init__(
        self,
        redis: Redis,
        *,
        ended_ttl: int = keys.ENDED_TTL,
        idle_ttl: int = keys.IDLE_TTL,
        page_size: int = 500,
        max_event_bytes: int = 64 * 1024,
        max_stream_events: int = 100_000,
        max_stream_bytes: int = 64 * 1024 * 1024,
        webhooks: bool = False,
        durability: Durability | None = None,
    ) -> None:
        self.redis = redis
        self.durability = durability or Durability(redis)
        """When an append is acknowledged (``core/durability.py``): the process's one
        policy, which the other write paths reach through the log."""
        self.webhooks = webhooks
        """Streams this process creates ask for the deployment's webhooks (its settings
        name a receiver): set in their metadata at creation, so that any later writer's
        terminal event goes to the outbox (``keys.outbox_key``) without knowing them."""
        self.ended_ttl = ended_ttl
        self.idle_ttl = idle_ttl
        self.max_event_bytes = max_event_bytes
        self.max_stream_events = max_stream_events
        self.max_stream_bytes = max_stream_bytes
        self.page_size = page_size
        self.publish, self.db = connection.publish_target(redis)
        self._append = redis.register_script(script("append.lua"))
        self.shared: Coalesce | None = None
        """Set (a front-end): concurrent identical reads of a stream's state and pages
        are made once (``core/coalesce.py``)."""

    # --- writes ---

    async def append(
        self,
        stream_id: str,
        events: Sequence[dict[str, Any]],
        *,
        kind: str = "",
        expect_seq: int | None = None,
        owner: str | None = None,
        meta: dict[str, str] | None = None,
        text_append: str | None = None,
        text_reset: str | None = None,
        extras: dict[str, Any] | None = None,
        stored: Sequence[tuple[str, bytes]] | None = None,
    ) -> int:
        """Append ``events`` atomically and return the seq of the last one.

        ``kind="feed"`` creates a job-progress stream on first publish and refuses a
        generation; ``kind="generation"`` requires an existing generation. ``expect_seq``
        and ``owner`` make the append conditional (``owner=UNCLAIMED``: only while no
        worker has claimed the generation). ``meta`` fields and the text change are
        applied in the same step, so status and events can never disagree, and so are
        ``extras`` (append.lua's header: a webhook event, the waiting set, the steering
        list). ``stored``: the events as ``checked`` made them already, not made again.
        """
        args = self._args(
            stream_id,
            events,
            kind=kind,
            expect_seq=expect_seq,
            owner=owner,
            meta=meta,
            text_append=text_append,
            text_reset=text_reset,
            extras=extras,
            stored=stored,
        )
        status, seq, *_ = await self.durability.script(
            self._append, _append_keys(stream_id), args, then=self._pushes
        )
        if status != b"OK":
            invalid = _invalid(status, stream_id)
            if invalid is not None:
                raise invalid
            raise self._refusal(status, stream_id, int(seq), expect_seq)
        return int(seq)

    async def append_many(
        self, batches: Sequence[tuple[str, Sequence[dict[str, Any]]]], *, kind: str = "feed"
    ) -> list[int | AppendRefused]:
        """Append to many streams in one round trip (a pipeline of the same script, each
        append atomic on its own): the seq of each batch's last event, or why it was
        refused."""
        calls = [(_append_keys(sid), self._args(sid, events, kind=kind)) for sid, events in batches]
        replies: list[Any]
        if self.durability.waits:  # one round of the committer (group commit) for all
            replies = list(
                await asyncio.gather(
                    *(
                        self.durability.script(self._append, k, a, then=self._pushes)
                        for k, a in calls
                    ),
                    return_exceptions=True,
                )
            )
        else:
            replies = await scripts_pipelined(self.redis, self._append, calls)
        for (sid, _), reply in zip(batches, replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            invalid = _invalid(reply[0], sid)
            if invalid is not None:
                raise invalid
        return [
            int(r[1]) if r[0] == b"OK" else self._refusal(r[0], sid, int(r[1]), None)
            for (sid, _), r in zip(batches, replies, strict=True)
        ]

    def _pushes(self, reply: Any) -> list[tuple[Any, ...]]:
        """The publishes an append left to its committer (append.lua returns them when
        the durability mode waits), to be sent once the append is confirmed: a front-end
        pushes nothing that a failover could still lose."""
        if len(reply) < 3:
            return []
        flat = reply[2]
        return [(self.publish, flat[i], flat[i + 1]) for i in range(0, len(flat) - 1, 2)]

    def _args(
        self,
        stream_id: str,
        events: Sequence[dict[str, Any]],
        *,
        kind: str,
        expect_seq: int | None = None,
        owner: str | None = None,
        meta: dict[str, str] | None = None,
        text_append: str | None = None,
        text_reset: str | None = None,
        extras: dict[str, Any] | None = None,
        stored: Sequence[tuple[str, bytes]] | None = None,
    ) -> list[str | bytes | int]:
        """The append script's arguments (their order is the script's header). A feed's
        append carries a token of its own: redis-py sends a command again when its
        connection is cut before the reply, and the append, if it happened, then answers
        as it did instead of writing its events twice (append.lua's header)."""
        batch = self.checked(events) if stored is None else stored
        if text_reset is not None:
            text = ("reset", text_reset)
        else:
            text = ("append", text_append) if text_append else ("", "")
        args: list[str | bytes | int] = [
            kind,
            "" if expect_seq is None else expect_seq,
            owner or "",
            self.ended_ttl,
            self.idle_ttl,
            *text,
            self.max_stream_events,
            self.max_stream_bytes,
            self.channel(stream_id),
            "" if self.durability.waits else self.publish,  # "": published once confirmed
            keys.PUSH_MAX_BYTES,
            len(meta or {}),
            "d" if self.webhooks else "",  # a feed this append creates: its webhook
            keys.OUTBOX_MAX_LEN,
            json.dumps(extras, separators=(",", ":")) if extras else "",
            secrets.token_hex(8) if kind == "feed" else "",  # the append's own token
        ]
        for k, v in (meta or {}).items():
            args += [k, v]
        for etype, data in batch:
            args += [etype, data]
        return args

    def channel(self, stream_id: str) -> bytes:
        """The pub/sub channel every append to ``stream_id`` is published on."""
        return keys.push_channel(stream_id, self.db).encode()

    def checked(
        self, events: Sequence[dict[str, Any]], *, pieces: bool = False
    ) -> list[tuple[str, bytes]]:
        """``events`` as an append stores them (valid, each within ``max_event_bytes``),
        or why it would refuse them (``InvalidEvent``, ``EventTooLarge``) before anything
        is sent; a caller may check a large batch off the event loop first (``stored``),
        encoding each event a piece at a time (``pieces``: ``events.dump_event``)."""
        batch = dump_batch(list(events), pieces=pieces)
        for etype, data in batch:
            if len(data) > self.max_event_bytes:
                raise EventTooLarge(
                    f"a {etype!r} event of {len(data)} bytes is over the limit of "
                    f"{self.max_event_bytes}"
                )
        return batch

    def _refusal(
        self, status: bytes, stream_id: str, seq: int, expect_seq: int | None
    ) -> AppendRefused:
        """Why the append script changed nothing, as the exception to raise."""
        match status:
            case b"ENDED":
                return StreamEnded(stream_id, seq, f"stream {stream_id} has ended")
            case b"STALE":
                return StaleWriter(
                    stream_id, seq, f"stream {stream_id} is at seq {seq}, not {expect_seq}"
                )
            case b"OWNER":
                return StaleWriter(stream_id, seq, f"stream {stream_id} has another owner")
            case b"LIMIT":
                return StreamFull(
                    stream_id,
                    seq,
                    f"stream {stream_id} is full (limits: {self.max_stream_events} events, "
                    f"{self.max_stream_bytes} bytes); only a terminal event is accepted",
                )
            case b"KIND":
                return WrongKind(
                    stream_id,
                    seq,
                    f"stream {stream_id} is not a job feed (a generation, whose worker "
                    "appends, or a Durable Stream, appended at /v1/stream/)",
                )
            case _:
                return StreamNotFound(stream_id, seq, f"no stream {stream_id}")

    # --- reads ---

    async def info(self, stream_id: str, at: int | None = None) -> StreamInfo | None:
        """Where the stream is; with ``at``, also the history tag of its event ``at``
        (read in the same round trip), to check a resume point against."""
        if self.shared is not None:
            result: StreamInfo | None = await self.shared.run(
                ("info", stream_id, at), lambda: self._info(stream_id, at)
            )
            return result
        return await self._info(stream_id, at)

    async def _info(self, stream_id: str, at: int | None) -> StreamInfo | None:
        if at is None:
            reply = await self.redis.hmget(keys.meta_key(stream_id), *_INFO_FIELDS)
            entry: list[Any] = []
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hmget(keys.meta_key(stream_id), *_INFO_FIELDS)
                pipe.xrange(keys.log_key(stream_id), min=f"{at}-0", max=f"{at}-0")
                reply, entry = await pipe.execute()
        return _stream_info(reply, entry, stream_id)

    async def infos(self, stream_ids: Sequence[str]) -> list[StreamInfo | None]:
        """``info`` of each stream, all in one round trip (a connection following many)."""
        if not stream_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream_id in stream_ids:
                pipe.hmget(keys.meta_key(stream_id), *_INFO_FIELDS)
            replies = await pipe.execute()
        return [_stream_info(reply, []) for reply in replies]

    async def infos_at(self, points: Sequence[tuple[str, int]]) -> list[StreamInfo | None]:
        """``info(stream, at=seq)`` of each ``(stream id, seq)``, all in one round trip
        (a resume point naming many streams)."""
        if not points:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream_id, at in points:
                pipe.hmget(keys.meta_key(stream_id), *_INFO_FIELDS)
                pipe.xrange(keys.log_key(stream_id), min=f"{at}-0", max=f"{at}-0")
            replies = await pipe.execute()
        return [
            _stream_info(r, e, sid)
            for (sid, _), r, e in zip(points, replies[::2], replies[1::2], strict=True)
        ]

    async def read_pages(self, points: Sequence[tuple[str, int]], count: int) -> list[list[Event]]:
        """For each ``(stream id, after)``, up to ``count`` events with seq > ``after``:
        the first page of each, all in one round trip."""
        if not points:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream_id, after in points:
                pipe.xrange(keys.log_key(stream_id), min=f"{after + 1}-0", count=count)
            replies = await pipe.execute()
        return [
            entries_to_events(cast(_Entries, entries), sid)
            for (sid, _), entries in zip(points, replies, strict=True)
        ]

    async def positions(self, points: Sequence[tuple[str, int]]) -> list[tuple[int, str]]:
        """For each ``(stream id, seq)``: the seq of the stream's newest event (0 if it has
        none), and the history tag of its event ``seq`` ("" if it holds none), all in one
        round trip. Tells a reader whether Redis lost or rewrote what it had read."""
        if not points:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream_id, seq in points:
                key = keys.log_key(stream_id)
                pipe.xrevrange(key, count=1)
                pipe.xrange(key, min=f"{seq}-0", max=f"{seq}-0")
            replies = await pipe.execute()
        out = []
        for (sid, _), newest, at in zip(points, replies[::2], replies[1::2], strict=True):
            last = entries_to_events(newest, sid)
            here = entries_to_events(at, sid)
            out.append((last[0].seq if last else 0, here[0].tag if here else ""))
        return out

    async def heads(self, stream_ids: Sequence[str]) -> list[tuple[int, str]]:
        """For each stream: the seq of its newest event and that event's history tag
        ((0, "") if the stream is gone), one command each, in one round trip. Cheaper than
        ``positions``, which also checks the history at a seq a reader holds."""
        if not stream_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream_id in stream_ids:
                pipe.hmget(keys.meta_key(stream_id), "seq", "tag")
            replies = await pipe.execute()
        return [(int(seq or 0), tag.decode() if tag else "") for seq, tag in replies]

    async def holds(self, stream_id: str, after: int, events: Sequence[dict[str, Any]]) -> bool:
        """Whether the entries right after seq ``after`` are exactly ``events``, byte for
        byte. A writer whose append's reply was lost (the connection dropped) asks this
        when its conditional retry is refused: if they are its own events, the first try
        did happen, and the retry must not write them twice."""
        want = dump_batch(list(events))
        if self.durability.waits:
            # Read on the committer's connection, then its barrier and WAIT: the events
            # found are acknowledged only once replicas have them too (the lost reply's
            # write may never have reached one).
            key = keys.log_key(stream_id)
            (raw,) = await self.durability.run(
                key, [("XRANGE", key, f"{after + 1}-0", "+", "COUNT", len(want))]
            )
            entries = [(eid, dict(zip(f[::2], f[1::2], strict=True))) for eid, f in raw]
            page = entries_to_events(entries, stream_id)
        else:
            page = await self.read_page(stream_id, after, len(want))
        return [(e.type, e.data) for e in page] == want

    async def fields(self, stream_id: str, *names: str) -> dict[str, str]:
        """Those of the named fields of the stream's metadata it has: not the whole hash,
        which for a generation holds its request (as large as the body it came from)."""
        values = cast(list[bytes | None], await self.redis.hmget(keys.meta_key(stream_id), *names))
        return {n: v.decode() for n, v in zip(names, values, strict=True) if v is not None}

    async def meta(self, stream_id: str) -> dict[str, str] | None:
        """The metadata hash and the text so far (under ``text``), or None."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.meta_key(stream_id))
            pipe.get(keys.text_key(stream_id))
            raw, text = await pipe.execute()
        if not raw:
            return None
        out = {k.decode(): v.decode() for k, v in raw.items()}
        out["text"] = text.decode() if text else ""
        return out

    async def read_page(self, stream_id: str, after: int, count: int | None = None) -> list[Event]:
        """Up to ``count`` events with seq > ``after``, in order."""
        if self.shared is not None:
            page: list[Event] = await self.shared.run(
                ("page", stream_id, after, count), lambda: self._read_page(stream_id, after, count)
            )
            return page
        return await self._read_page(stream_id, after, count)

    async def _read_page(self, stream_id: str, after: int, count: int | None) -> list[Event]:
        entries = await self.redis.xrange(
            keys.log_key(stream_id), min=f"{after + 1}-0", count=count or self.page_size
        )
        return entries_to_events(cast(_Entries, entries), stream_id)

    async def read_back(self, stream_id: str, before: int, after: int, count: int) -> list[Event]:
        """Up to ``count`` events with ``after`` < seq < ``before``, newest first (a
        resume that looks back from a point for where its part began)."""
        if before - after <= 1 or count <= 0:
            return []
        entries = await self.redis.xrevrange(
            keys.log_key(stream_id), max=f"{before - 1}-0", min=f"{after + 1}-0", count=count
        )
        return entries_to_events(cast(_Entries, entries), stream_id)

    async def read_after(
        self, stream_id: str, after: int, until: int | None = None
    ) -> AsyncIterator[list[Event]]:
        """Pages of events with ``after`` < seq (<= ``until``), so a long stream is never
        held in memory at once. A page holds up to ``page_size`` events and aims at
        ``PAGE_BYTES``: pages of large events are shorter. A page shorter than asked for
        was the last: no read is spent on learning that nothing follows."""
        count = min(self.page_size, FIRST_PAGE)
        while until is None or after < until:
            if until is not None:
                count = min(count, until - after)
            page = await self.read_page(stream_id, after, count)
            if until is not None:
                page = [e for e in page if e.seq <= until]
            if not page:
                return
            yield page
            if len(page) < count:
                return
            after = page[-1].seq
            average = sum(len(e.data) for e in page) // len(page) + 64
            count = max(1, min(self.page_size, PAGE_BYTES // average))
