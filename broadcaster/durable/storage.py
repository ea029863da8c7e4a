"""Durable Streams in Redis: the only code that knows their layout, as ``core/eventlog.py``
is for streams of events.

A Durable Stream is laid out as any stream of this project (entries ``<seq>-0``, a
metadata hash, a history tag per entry, pushed on its channel); its entries hold bytes
or one JSON message, its metadata the protocol's state. Every write is one Lua script
(``scripts/ds_*.lua``), so data and producer state are kept or lost together. Streams of
events read as JSON Durable Streams (``read``), read-only. Forks are copies up to the
fork point, with the same seqs and tags, so a fork needs nothing of its source.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from broadcaster.core import connection, contain, keys
from broadcaster.core.durability import Durability, NotConfirmed, Policy
from broadcaster.core.eventlog import script
from broadcaster.core.events import malformed
from broadcaster.core.keys import CLOSE, DATA, MORE

MAX_SEQ = 10**13
"""No stream comes near it; an offset beyond is read as if at it (and is then unknown).
Lua prints numbers with ``%.14g``: below 10^14 they print as the integers they are."""


def ds_script(name: str) -> str:
    """A Durable Streams script, after what they share (``ds_lib.lua``)."""
    return script("ds_lib.lua", "broadcaster.durable") + "\n" + script(name, "broadcaster.durable")


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    type: str
    data: bytes
    tag: str

    @property
    def is_data(self) -> bool:
        return self.type != CLOSE

    @property
    def ends_append(self) -> bool:
        """The last entry of one append (a POST's, or one event of a stream of events)."""
        return self.type != MORE


@dataclass(frozen=True, slots=True)
class State:
    """A stream as a Durable Stream sees it."""

    kind: str
    """``ds``, or the kind of a stream of events (``generation``, ``feed``): read-only."""
    content_type: str
    seq: int
    """The seq of the last entry, the closure marker included (where the hub's cursor of
    the stream starts)."""
    tag: str
    tail: int
    """The seq of the last data entry (0 before the first)."""
    tail_tag: str
    closed: bool
    deleted: bool
    pending: bool
    ttl: int | None
    """Seconds of the sliding TTL, if the stream has one."""
    expires_at: int | None
    """Unix ms of the absolute expiry, if the stream has one."""
    tag_at: str
    """The history tag of the entry at the seq the reader asked after ("" for none)."""

    @property
    def writable(self) -> bool:
        return self.kind == "ds"


@dataclass(frozen=True, slots=True)
class Written:
    """What a write script said: its status, the tail after it, and two values whose
    meaning depends on the status (a producer's epoch and seq, an expected seq...)."""

    status: str
    tail: int
    tail_tag: str
    closed: bool
    a: str = ""
    b: str = ""


@dataclass(frozen=True, slots=True)
class Registered:
    """``fork_register``'s answer: its status and what the fork inherits."""

    status: str
    kind: str
    content_type: str
    ttl: str
    expires_at: str
    tail: int
    tail_tag: str


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v or "")


_HEX = "0123456789abcdef"
_TYPES = frozenset((DATA, MORE, CLOSE))


def _entries(name: str, state: State, rest: list[Any]) -> list[Entry]:
    """The entries ``ds_read.lua`` returned (seq, type, data, tag each). One that cannot
    be served as it is ends them: in its place, an ``error`` message (the one readers of
    the stream as SSE get, ``events.malformed``) and the closure marker, so every reader
    ends there, as at the terminal event of a stream of events."""
    out = []
    one_line = state.kind != "ds" or state.content_type == "application/json"
    for i in range(0, len(rest), 4):
        seq, etype, data, tag = int(rest[i]), _text(rest[i + 1]), rest[i + 2], _text(rest[i + 3])
        flawed = (
            (etype not in _TYPES if state.kind == "ds" else etype in ("", CLOSE) or _breaks(etype))
            or (one_line and isinstance(data, bytes) and (b"\n" in data or b"\r" in data))
            or (tag != "" and (len(tag) != 8 or bool(tag.strip(_HEX))))
        )
        if flawed:
            contain.malformed("durable", name, seq, f"type {etype!r}, {len(data)} bytes")
            tag = tag if len(tag) == 8 and not tag.strip(_HEX) else ""
            out += [Entry(seq, DATA, malformed(seq).data, tag), Entry(seq, CLOSE, b"", tag)]
            break
        out.append(Entry(seq, etype, data, tag))
    return out


def _breaks(text: str) -> bool:
    """Whether ``text`` would split an SSE line."""
    return "\n" in text or "\r" in text


NotReplicated = NotConfirmed
"""The write happened on the primary, but fewer replicas than asked confirmed it in
time: acknowledging it could lose it in a failover. A producer that retries with the
same ``Producer-Seq`` is deduplicated, so the retry is safe (``core/durability.py``)."""


class DurableLog:
    """Reads and writes Durable Streams (``decode_responses`` off: data stays bytes); every
    write goes through ``durability``, so a write acknowledged under ``replicas`` survives
    a failover."""

    def __init__(
        self,
        redis: Redis,
        *,
        idle_ttl: int = keys.IDLE_TTL,
        max_entries: int = 100_000,
        max_bytes: int = 64 * 1024 * 1024,
        wait_replicas: int = 0,
        wait_ms: int = 1000,
        durability: Durability | None = None,
    ) -> None:
        self.redis = redis
        self.idle_ttl = idle_ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        if durability is None:
            policy = Policy("replicas", wait_replicas, wait_ms) if wait_replicas else Policy()
            durability = Durability(redis, policy)
            self._owns_durability = True
        else:
            self._owns_durability = False
        self.durability = durability
        self.publish, self.db = connection.publish_target(redis)
        self._read = redis.register_script(ds_script("ds_read.lua"))
        self._create = redis.register_script(ds_script("ds_create.lua"))
        self._append = redis.register_script(ds_script("ds_append.lua"))
        self._copy = redis.register_script(ds_script("ds_copy.lua"))
        self._register = redis.register_script(ds_script("ds_fork_register.lua"))
        self._delete = redis.register_script(ds_script("ds_delete.lua"))
        self._unfork = redis.register_script(ds_script("ds_unfork.lua"))

    def channel(self, name: str) -> bytes:
        return keys.push_channel(name, self.db).encode()

    async def aclose(self) -> None:
        if self._owns_durability:
            await self.durability.aclose()

    async def _write(self, script: AsyncScript, ks: list[str], args: list[Any]) -> Any:
        """Run a write script, acknowledged as ``durability`` says."""
        return await self.durability.script(script, ks, args)

    # --- reads ---

    async def read(
        self, name: str, after: int, count: int = 0, budget: int = 0, *, touch: bool = False
    ) -> tuple[State | None, list[Entry]]:
        """The stream's state (None: no such stream) and up to ``count`` entries after seq
        ``after``, stopping once ``budget`` bytes are reached (at least one entry).
        ``touch`` renews a sliding TTL, as every read but ``HEAD`` must."""
        after = min(after, MAX_SEQ)
        reply = cast(
            list[Any],
            await self._read(
                keys=keys.ds_keys(name), args=[after, count, budget, "1" if touch else ""]
            ),
        )
        kind = _text(reply[0])
        if not kind:
            return None, []
        ct, seq, tag, dseq, dtag, ended, deleted, pending, ttl, exp = map(_text, reply[1:11])
        native = kind != "ds"
        state = State(
            kind=kind,
            content_type="application/json" if native else ct,
            seq=int(seq or 0),
            tag=tag,
            tail=int(seq if native else dseq or 0),
            tail_tag=tag if native else dtag,
            closed=bool(ended),
            deleted=bool(deleted),
            pending=bool(pending),
            ttl=int(ttl) if ttl else None,
            expires_at=int(exp) if exp else None,
            tag_at=_text(reply[11]) if len(reply) > 11 else "",
        )
        return state, _entries(name, state, reply[12:])

    async def entries(self, name: str, after: int, until: int) -> list[Entry]:
        """Entries ``after`` < seq <= ``until`` (a fork's inheritance, read in pages by the
        caller)."""
        after, until = min(after, MAX_SEQ), min(until, MAX_SEQ)
        raw = await self.redis.xrange(keys.log_key(name), min=f"{after + 1}-0", max=f"{until}-0")
        out = []
        for entry_id, fields in cast(list[tuple[bytes, dict[bytes, bytes]]], raw):
            # As stored, whatever it holds: the fork's readers are told of a malformed
            # entry as the source's are (``read``).
            out.append(
                Entry(
                    int(entry_id.split(b"-", 1)[0]),
                    fields.get(b"t", b"").decode(errors="replace"),
                    fields.get(b"d", b""),
                    fields.get(b"h", b"").decode(errors="replace"),
                )
            )
        return out

    async def alive(self, names: Sequence[str]) -> list[bool]:
        """Whether each stream exists (forks that expired are forgotten by their source)."""
        if not names:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.exists(keys.meta_key(name))
            return [bool(n) for n in await pipe.execute()]

    async def forks(self, name: str) -> list[str]:
        members = await self.redis.smembers(keys.forks_key(name))
        return sorted(_text(m) for m in members)

    # --- writes ---

    def _common(self, name: str) -> list[str | bytes | int]:
        return [self.channel(name), self.publish, keys.PUSH_MAX_BYTES]

    async def create(
        self,
        name: str,
        content_type: str,
        *,
        ttl: int | None = None,
        expires_at: int | None = None,
        closed: bool = False,
        fork: tuple[str, str, int] | None = None,
        entries: Sequence[tuple[str, bytes]] = (),
    ) -> Written:
        """Create ``name`` (``CREATED``), or compare it with an existing one: ``SAME``,
        ``PENDING`` (a fork with this configuration being made), ``DIFFERENT``,
        ``DELETED`` (soft-deleted), ``OTHER`` (a stream of events). A fork (``(source
        name, fork offset, sub-offset)``) is created pending: ``copy`` fills it and
        ``append(finalize=True)`` opens it."""
        fsrc, foff, fsub = fork if fork else ("", "", 0)
        args: list[str | bytes | int] = [
            content_type,
            "" if ttl is None else ttl,
            "" if expires_at is None else expires_at,
            "1" if closed else "",
            fsrc,
            foff,
            fsub if fork and fsub else "",
            "1" if fork else "",
            self.idle_ttl,
            *self._common(name),
        ]
        for etype, data in entries:
            args += [etype, data]
        ks = [*keys.ds_keys(name), keys.names_key(name)]
        status, dseq, dtag, was_closed = await self._write(self._create, ks, args)
        return Written(_text(status), int(dseq), _text(dtag), bool(_text(was_closed)))

    async def append(
        self,
        name: str,
        content_type: str,
        entries: Sequence[tuple[str, bytes]],
        *,
        stream_seq: str | None = None,
        producer: tuple[str, int, int] | None = None,
        close: bool = False,
        finalize: bool = False,
    ) -> Written:
        """Append (and/or close) under every check of the protocol, in its order: closed,
        content type, producer, ``Stream-Seq``, limits. Statuses: ``OK``, ``CLOSED``
        (409), ``CLOSED_OK`` (a close of a closed stream), ``DUP`` (a producer's retry:
        ``a``/``b`` its epoch and highest seq), ``STALE_EPOCH`` (``a``: the current
        epoch), ``EPOCH_SEQ``, ``GAP`` (``a`` expected, ``b`` received), ``SEQ``, ``CT``,
        ``LIMIT``, ``NOSTREAM``, ``READONLY``, ``GONE``."""
        pid, epoch, pseq = producer if producer else ("", "", "")
        args: list[str | bytes | int] = [
            content_type if entries else "",
            stream_seq or "",
            pid,
            epoch,
            pseq,
            "1" if close else "",
            "1" if finalize else "",
            self.idle_ttl,
            self.max_entries,
            self.max_bytes,
            *self._common(name),
            # The append's own token: sent again by the Redis client after its reply was
            # lost, it answers as it was made, not as a second append (ds_append.lua).
            secrets.token_hex(8),
        ]
        for etype, data in entries:
            args += [etype, data]
        status, dseq, dtag, closed, a, b = await self._write(
            self._append, keys.ds_keys(name)[:3], args
        )
        return Written(
            _text(status), int(dseq), _text(dtag), bool(_text(closed)), _text(a), _text(b)
        )

    async def copy(self, name: str, entries: Sequence[Entry]) -> bool:
        """Add inherited entries to a fork being made; False if it vanished meanwhile."""
        args: list[str | bytes | int] = [self.idle_ttl]
        for e in entries:
            args += [e.type, e.data]
        return _text(await self._write(self._copy, keys.ds_keys(name)[:2], args)) == "OK"

    async def fork_register(self, source: str, fork: str, at: int, tag: str) -> Registered:
        """On the source's slot: may it be forked at ``at`` (whose history tag is
        ``tag``)? If so, the fork is counted among its forks."""
        src = keys.ds_keys(source)
        status, kind, ct, ttl, exp, dseq, dtag = await self._write(
            self._register, [src[0], src[1], src[3]], [fork, at, tag, self.idle_ttl]
        )
        return Registered(
            _text(status), _text(kind), _text(ct), _text(ttl), _text(exp), int(dseq), _text(dtag)
        )

    async def delete(self, name: str) -> str:
        """``DELETED``, ``SOFT`` (it has forks: 410 from now on), ``NOSTREAM``,
        ``READONLY`` or ``GONE``. A deleted fork is forgotten by its source, and a
        soft-deleted source whose last fork this was goes too, up the chain."""
        members = await self.forks(name)
        dead = [m for m, up in zip(members, await self.alive(members), strict=True) if not up]
        status, source = await self._write(
            self._delete, keys.ds_keys(name), [self.channel(name), self.publish, *dead]
        )
        if _text(status) == "DELETED":
            await self.unfork(_text(source), name)
        return _text(status)

    async def unfork(self, source: str, fork: str) -> None:
        """``fork`` is gone: its source forgets it, and goes too if it was soft-deleted
        and this was its last fork (and so on up the chain)."""
        while source:
            up = await self._write(self._unfork, keys.ds_keys(source), [fork])
            fork, source = source, _text(up)

    async def collect(self, name: str) -> bool:
        """A soft-deleted stream whose forks all expired (nobody deleted them) goes now;
        True if it went."""
        members = await self.forks(name)
        if any(await self.alive(members)):
            return False
        source = await self._write(self._unfork, keys.ds_keys(name), members or [""])
        if source is None:
            return False
        await self.unfork(_text(source), name)
        return True

    async def discard(self, name: str) -> None:
        """Remove a fork that could not be made (nobody saw it)."""
        await self.redis.delete(*keys.ds_keys(name))
