"""The event log: the only code that knows how a stream is laid out in Redis.

A stream is three keys sharing one hash tag (see ``keys.py``): a Redis Stream of events
whose entry ids are ``<seq>-0``, a metadata hash, and (for generations) the text so far.

Every write goes through one Lua script, ``APPEND``. A script rather than
``WATCH``/``MULTI`` because it runs in one round trip, cannot livelock under contention
between writers, and lets the checks and the writes see the same state: the stream is not
ended; the writer's expected last seq (if given) is the current one; the writer still owns
the stream (if it names an owner). Only then are the events added with explicit ids
``seq+1``, ``seq+2``, … so seq numbers are assigned by Redis, gap-free, and a refused
writer changes nothing. A terminal event marks the stream ended and starts its expiry.

**History tags.** Each event also gets a tag: 8 hex digits of
``sha1(previous tag, type, data)``, stored in its entry (``h``) and, for the newest, in the
metadata. The SSE id is ``<seq>.<tag>``, so a resume point names not only a position but
the whole history up to it. If Redis loses recent writes and the stream is then written
again *differently* (a feed's producer goes on publishing), a viewer that saw the lost
events resumes with a tag the stream does not hold at that seq and is told (409), instead
of being shown a spliced stream. A worker that writes the lost events again byte for byte
recreates the very same tags, so its viewers resume as if nothing happened. (Centrifugo's
epoch serves the same end, but changes on any loss; a tag changes only when the history
does.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from broadcaster import keys
from broadcaster.events import Event, InvalidEvent, dump_batch

_APPEND = """
local log, meta, text = KEYS[1], KEYS[2], KEYS[3]
local kind, expected, owner = ARGV[1], ARGV[2], ARGV[3]
local ended_ttl, idle_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local text_mode, text_arg = ARGV[6], ARGV[7]
local max_events, max_bytes = tonumber(ARGV[8]), tonumber(ARGV[9])
local n_meta = tonumber(ARGV[10])
local first = 11 + 2 * n_meta
local t = redis.call('TIME')
local now = tostring(t[1] * 1000 + math.floor(t[2] / 1000))

local m = redis.call('HMGET', meta, 'kind', 'seq', 'ended', 'owner', 'bytes', 'tag')
local seq
local create = false
if not m[1] then
  if kind ~= 'feed' then return {'NOSTREAM', 0} end
  seq = 0
  create = true
else
  seq = tonumber(m[2])
  if kind ~= '' and kind ~= m[1] then return {'KIND', seq} end
  if m[3] then return {'ENDED', seq} end
end
if expected ~= '' and tonumber(expected) ~= seq then return {'STALE', seq} end
if owner ~= '' and owner ~= m[4] then return {'OWNER', seq} end

-- Size limits; a lone terminal event is always accepted, so any stream can be ended.
local size = tonumber(m[5]) or 0
local added = 0
for i = first + 1, #ARGV, 2 do added = added + #ARGV[i] end
local lone = ARGV[first]
local lone_terminal = (#ARGV == first + 1) and
  (lone == 'finish' or lone == 'error' or lone == 'abort')
if not lone_terminal and
   (seq + (#ARGV - first + 1) / 2 > max_events or size + added > max_bytes) then
  return {'LIMIT', seq}
end

local ended = false
local tag = m[6] or ''
local i = first
while i < #ARGV do
  local etype = ARGV[i]
  seq = seq + 1
  -- The history tag chains this event to every one before it (module docstring).
  tag = string.sub(redis.sha1hex(tag .. etype .. ' ' .. ARGV[i + 1]), 1, 8)
  redis.call('XADD', log, seq .. '-0', 't', etype, 'd', ARGV[i + 1], 'h', tag)
  if etype == 'finish' or etype == 'error' or etype == 'abort' then
    ended = etype
  end
  i = i + 2
end

local updates = {'seq', seq, 'updated_at', now, 'bytes', size + added, 'tag', tag}
if create then
  updates[#updates + 1] = 'kind'
  updates[#updates + 1] = 'feed'
  updates[#updates + 1] = 'created_at'
  updates[#updates + 1] = now
end
for j = 11, 10 + 2 * n_meta, 2 do
  updates[#updates + 1] = ARGV[j]
  updates[#updates + 1] = ARGV[j + 1]
end
if ended then
  updates[#updates + 1] = 'ended'
  updates[#updates + 1] = ended
  if m[1] == 'generation' then
    local status = {finish = 'completed', error = 'failed', abort = 'cancelled'}
    updates[#updates + 1] = 'status'
    updates[#updates + 1] = status[ended]
  end
end
redis.call('HSET', meta, unpack(updates))
if text_mode == 'append' and text_arg ~= '' then
  redis.call('APPEND', text, text_arg)
elseif text_mode == 'reset' then
  redis.call('SET', text, text_arg)
end
local ttl = idle_ttl
if ended then ttl = ended_ttl end
redis.call('EXPIRE', log, ttl)
redis.call('EXPIRE', meta, ttl)
redis.call('EXPIRE', text, ttl)
return {'OK', seq}
"""

_CREATE_GENERATION = """
local meta = KEYS[1]
if redis.call('EXISTS', meta) == 1 then return 0 end
local t = redis.call('TIME')
local now = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
redis.call('HSET', meta, 'kind', 'generation', 'seq', 0, 'status', 'queued', 'attempt', 0,
  'created_at', now, 'updated_at', now, 'request', ARGV[1])
redis.call('EXPIRE', meta, tonumber(ARGV[2]))
return 1
"""

_CLAIM = """
local meta = KEYS[1]
local m = redis.call('HMGET', meta, 'kind', 'seq', 'ended')
if m[1] ~= 'generation' then return {'NOSTREAM', 0, 0} end
if m[3] then return {'ENDED', tonumber(m[2]), 0} end
local attempt = redis.call('HINCRBY', meta, 'attempt', 1)
redis.call('HSET', meta, 'owner', ARGV[1], 'status', 'running')
return {'OK', tonumber(m[2]), attempt}
"""


_INFO_FIELDS = ("kind", "seq", "ended", "tag")

PAGE_BYTES = 256 * 1024
"""What one replay page aims to hold, whatever the size of its events."""


_RELEASE = """
local meta = KEYS[1]
local m = redis.call('HMGET', meta, 'owner', 'ended')
if m[1] ~= ARGV[1] or m[2] then return 0 end
redis.call('HDEL', meta, 'owner')
redis.call('HSET', meta, 'status', 'queued')
return 1
"""


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


@dataclass(frozen=True, slots=True)
class Claim:
    """What a worker learns when it takes a generation: where the stream is, which try."""

    last_seq: int
    attempt: int


def _entry_to_event(entry_id: bytes, fields: dict[bytes, bytes]) -> Event:
    tag = fields.get(b"h", b"").decode()
    return Event(int(entry_id.split(b"-", 1)[0]), fields[b"t"].decode(), fields[b"d"], tag)


_Entries = Sequence[tuple[bytes, dict[bytes, bytes]]]


def entries_to_events(entries: _Entries) -> list[Event]:
    """Turn raw ``XRANGE``/``XREAD`` entries into events (the client returns bytes)."""
    return [_entry_to_event(eid, fields) for eid, fields in entries]


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
    ) -> None:
        self.redis = redis
        self.ended_ttl = ended_ttl
        self.idle_ttl = idle_ttl
        self.max_event_bytes = max_event_bytes
        self.max_stream_events = max_stream_events
        self.max_stream_bytes = max_stream_bytes
        self.page_size = page_size
        self._append = redis.register_script(_APPEND)
        self._create = redis.register_script(_CREATE_GENERATION)
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)

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
    ) -> int:
        """Append ``events`` atomically and return the seq of the last one.

        ``kind="feed"`` creates a job-progress stream on first publish and refuses a
        generation; ``kind="generation"`` requires an existing generation. ``expect_seq``
        and ``owner`` make the append conditional. ``meta`` fields and the text change are
        applied in the same step, so status and events can never disagree.
        """
        batch = dump_batch(list(events))
        for etype, data in batch:
            if len(data) > self.max_event_bytes:
                raise EventTooLarge(
                    f"a {etype!r} event of {len(data)} bytes is over the limit of "
                    f"{self.max_event_bytes}"
                )
        meta = meta or {}
        if text_reset is not None:
            text_mode, text_arg = "reset", text_reset
        elif text_append:
            text_mode, text_arg = "append", text_append
        else:
            text_mode, text_arg = "", ""
        args: list[str | bytes | int] = [
            kind,
            "" if expect_seq is None else expect_seq,
            owner or "",
            self.ended_ttl,
            self.idle_ttl,
            text_mode,
            text_arg,
            self.max_stream_events,
            self.max_stream_bytes,
            len(meta),
        ]
        for k, v in meta.items():
            args += [k, v]
        for etype, data in batch:
            args += [etype, data]
        status, seq = await self._append(keys=keys.stream_keys(stream_id), args=args)
        seq = int(seq)
        match status:
            case b"OK":
                return seq
            case b"ENDED":
                raise StreamEnded(stream_id, seq, f"stream {stream_id} has ended")
            case b"STALE":
                raise StaleWriter(
                    stream_id, seq, f"stream {stream_id} is at seq {seq}, not {expect_seq}"
                )
            case b"OWNER":
                raise StaleWriter(stream_id, seq, f"stream {stream_id} has another owner")
            case b"LIMIT":
                raise StreamFull(
                    stream_id,
                    seq,
                    f"stream {stream_id} is full (limits: {self.max_stream_events} events, "
                    f"{self.max_stream_bytes} bytes); only a terminal event is accepted",
                )
            case b"KIND":
                raise WrongKind(
                    stream_id, seq, f"stream {stream_id} is a generation: only its worker appends"
                )
            case _:
                raise StreamNotFound(stream_id, seq, f"no stream {stream_id}")

    async def create_generation(self, stream_id: str, request: dict[str, Any]) -> bool:
        """Create a queued generation; False if the id is taken."""
        created = await self._create(
            keys=[keys.meta_key(stream_id)],
            args=[json.dumps(request, separators=(",", ":")), self.idle_ttl],
        )
        return bool(created)

    async def recreate_generation(self, stream_id: str, request: dict[str, Any]) -> bool:
        """Create again a generation whose metadata Redis lost, dropping what is left of
        its events and text, for the one worker that wrote all of them to write them
        again (an event log without its hash could never be appended to: ids must grow).
        False if the generation exists."""
        if not await self.create_generation(stream_id, request):
            return False
        await self.redis.delete(keys.log_key(stream_id), keys.text_key(stream_id))
        return True

    async def claim(self, stream_id: str, owner: str) -> Claim | None:
        """Make ``owner`` the only writer of a generation and count the attempt.

        Returns None when the generation is gone or already ended (nothing to run).
        """
        status, seq, attempt = await self._claim(keys=[keys.meta_key(stream_id)], args=[owner])
        if status != b"OK":
            return None
        return Claim(int(seq), int(attempt))

    async def release(self, stream_id: str, owner: str) -> bool:
        """Give up ownership of a generation that is not ended (it goes back to
        ``queued``); False if ``owner`` no longer owns it."""
        return bool(await self._release(keys=[keys.meta_key(stream_id)], args=[owner]))

    # --- reads ---

    async def info(self, stream_id: str, at: int | None = None) -> StreamInfo | None:
        """Where the stream is; with ``at``, also the history tag of its event ``at``
        (read in the same round trip), to check a resume point against."""
        if at is None:
            reply = await self.redis.hmget(keys.meta_key(stream_id), *_INFO_FIELDS)
            entry: list[Any] = []
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hmget(keys.meta_key(stream_id), *_INFO_FIELDS)
                pipe.xrange(keys.log_key(stream_id), min=f"{at}-0", max=f"{at}-0")
                reply, entry = await pipe.execute()
        kind, seq, ended, tag = cast(list[bytes | None], reply)
        if kind is None:
            return None
        tag_at = entries_to_events(entry)[0].tag if entry else None
        return StreamInfo(
            kind.decode(),
            int(seq or 0),
            ended.decode() if ended else None,
            tag_at,
            tag.decode() if tag else "",
        )

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
        for newest, at in zip(replies[::2], replies[1::2], strict=True):
            last = entries_to_events(newest)
            here = entries_to_events(at)
            out.append((last[0].seq if last else 0, here[0].tag if here else ""))
        return out

    async def holds(self, stream_id: str, after: int, events: Sequence[dict[str, Any]]) -> bool:
        """Whether the entries right after seq ``after`` are exactly ``events``, byte for
        byte. A writer whose append's reply was lost (the connection dropped) asks this
        when its conditional retry is refused: if they are its own events, the first try
        did happen, and the retry must not write them twice."""
        want = dump_batch(list(events))
        page = await self.read_page(stream_id, after, len(want))
        return [(e.type, e.data) for e in page] == want

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
        entries = await self.redis.xrange(
            keys.log_key(stream_id), min=f"{after + 1}-0", count=count or self.page_size
        )
        return entries_to_events(cast(_Entries, entries))

    async def read_after(
        self, stream_id: str, after: int, until: int | None = None
    ) -> AsyncIterator[list[Event]]:
        """Pages of events with ``after`` < seq (<= ``until``), so a long stream is never
        held in memory at once. A page holds up to ``page_size`` events and aims at
        ``PAGE_BYTES``: pages of large events are shorter."""
        count = min(self.page_size, 64)
        while until is None or after < until:
            if until is not None:
                count = min(count, until - after)
            page = await self.read_page(stream_id, after, count)
            if until is not None:
                page = [e for e in page if e.seq <= until]
            if not page:
                return
            yield page
            after = page[-1].seq
            average = sum(len(e.data) for e in page) // len(page) + 64
            count = max(1, min(self.page_size, PAGE_BYTES // average))
