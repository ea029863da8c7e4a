"""Many streams on one connection: the names a prefix covers, and the connection's resume
point, one ``Last-Event-ID`` carrying every stream's position.

**The resume point** is ``<base>.<ref>=<seq>.<tag>,…``: a *base* (a snapshot of
positions kept in Redis under a random token, or ``-`` for none) and the positions that
moved since it, each naming its stream by its index in the base (sorted by name) or, for
a stream the base does not hold, by ``~<stream id>``. An id thus stays short however many
streams the connection follows: when the moved positions pass ``REBASE``, the connection
writes a new base (one ``SET`` in the background) and starts again from it. Nothing is
written per event. A position keeps its history tag, so a resume is checked as strictly
as a single stream's: a stream that holds fewer events, or other ones, or none any more,
is refused, never silently skipped.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from broadcaster.core import keys, sse

REBASE = 16
"""Moved positions an id carries before the connection writes a new base."""

_DELTA = re.compile(r"^(?:(\d{1,6})|~([A-Za-z0-9_-]{1,64}))=(\d{1,18})(?:\.([0-9a-f]{8}))?$")
_TOKEN = re.compile(r"^(-|[0-9a-f]{16})$")

Position = tuple[int, str]
"""(seq, history tag) of the last event of a stream a client was sent."""


class BadResumePoint(ValueError):
    """Not a resume point this server issued (400)."""


class ResumePointGone(LookupError):
    """A resume point whose base Redis no longer holds (its TTL passed): 409."""


def base_key(token: str) -> str:
    """The snapshot of positions a connection's ids refer to (its own hash tag: spread)."""
    return f"{keys.PREFIX}:{{mux{token[:4]}}}:{token}"


@dataclass(slots=True)
class Cursor:
    """One connection's positions, and the id that says them (bytes, as sent)."""

    token: str
    base: list[str]
    """The streams of the base, sorted: a delta names one by its index here."""
    positions: dict[str, Position]
    moved: dict[str, bytes] = field(default_factory=dict)
    """Stream -> its delta (``<ref>=<seq>.<tag>``), for the streams whose position moved
    since the base."""
    _refs: dict[str, bytes] = field(default_factory=dict, repr=False)
    """Stream -> how a delta names it (``<index>=`` or ``~<stream id>=``), made once."""
    _index: dict[str, int] = field(default_factory=dict, repr=False)
    _id: bytes | None = field(default=None, repr=False)
    _token: bytes = field(default=b"", repr=False)
    _dot: bytes = field(default=b"", repr=False)
    """``<token>.``: how an id that names moved positions begins."""

    def __post_init__(self) -> None:
        self._start(self.token, self.base)

    def _start(self, token: str, base: list[str]) -> None:
        """Name the base ``token`` (holding ``base``): nothing moved since it yet."""
        self.token, self._token = token, token.encode()
        self._dot = self._token + b"."
        self.base = base
        self._index = {s: i for i, s in enumerate(base)}
        self._refs = {}
        self.moved = {}
        self._id = None

    @classmethod
    def empty(cls) -> Cursor:
        return cls("-", [], {})

    def advance(self, stream_id: str, seq: int, tag: str) -> None:
        self._set(stream_id, (seq, tag), sse.event_id(seq, tag))
        self._id = None

    def move(self, stream_id: str, position: Position, suffix: bytes) -> bytes:
        """``advance`` with the position's event id already made (a live event's, made
        once for every connection following its stream); the new id."""
        delta = self._set(stream_id, position, suffix)
        moved = self.moved
        # The usual dashboard: one of its streams is busy, and only it moved since the base.
        self._id = ident = self._dot + (delta if len(moved) == 1 else b",".join(moved.values()))
        return ident

    def _set(self, stream_id: str, position: Position, suffix: bytes) -> bytes:
        self.positions[stream_id] = position
        self.moved[stream_id] = delta = (self._refs.get(stream_id) or self._ref(stream_id)) + suffix
        return delta

    def _ref(self, stream_id: str) -> bytes:
        """How a delta names ``stream_id`` (``<index in the base>=`` or ``~<id>=``)."""
        index = self._index.get(stream_id)
        ref = b"%d=" % index if index is not None else b"~%s=" % stream_id.encode()
        self._refs[stream_id] = ref
        return ref

    def forget(self, stream_id: str) -> None:
        """The stream has no position (one it was given is taken back)."""
        self.positions.pop(stream_id, None)
        self.moved.pop(stream_id, None)
        self._id = None

    @property
    def id(self) -> bytes:
        if self._id is None:
            moved = self.moved
            token = self._token
            self._id = b"%s.%s" % (token, b",".join(moved.values())) if moved else token
        return self._id

    def snapshot(self) -> tuple[str, dict[str, Position]]:
        """A new base: its token and the positions it holds (to write, then ``rebased``)."""
        return secrets.token_hex(8), dict(self.positions)

    def rebased(self, token: str, snapshot: dict[str, Position]) -> None:
        """The base ``token`` (holding ``snapshot``) is written: ids name it from now on,
        with what moved since it was taken."""
        self._start(token, sorted(snapshot))
        for stream_id, (seq, tag) in list(self.positions.items()):
            if snapshot.get(stream_id) != (seq, tag):
                self.advance(stream_id, seq, tag)


def parse(raw: str) -> tuple[str, list[tuple[int | str, Position]]]:
    """An id's base token and its deltas (a base index or a stream id, and a position);
    BadResumePoint unless this server could have issued it."""
    token, _, rest = raw.strip().partition(".")
    if not _TOKEN.match(token) or len(raw) > 65536:
        raise BadResumePoint("not a resume point of /v1/events")
    deltas: list[tuple[int | str, Position]] = []
    for part in rest.split(",") if rest else []:
        m = _DELTA.match(part)
        if m is None:
            raise BadResumePoint(f"malformed position {part[:80]!r}")
        ref: int | str = int(m.group(1)) if m.group(1) is not None else m.group(2)
        deltas.append((ref, (int(m.group(3)), m.group(4) or "")))
    return token, deltas


class Bases:
    """Where connections keep their bases (one key each, expiring with ``ttl``)."""

    def __init__(self, redis: Redis, ttl: int) -> None:
        self.redis = redis
        self.ttl = ttl

    async def write(self, token: str, positions: dict[str, Position]) -> None:
        rows = [[s, seq, tag] for s, (seq, tag) in sorted(positions.items())]
        await self.redis.set(base_key(token), json.dumps(rows, separators=(",", ":")), ex=self.ttl)

    async def resume(self, raw: str) -> Cursor:
        """The cursor an id names (its base read from Redis). BadResumePoint for a
        malformed id or a reference outside its base; ResumePointGone for a base Redis no
        longer holds."""
        token, deltas = parse(raw)
        rows: list[list[object]] = []
        if token != "-":
            stored = await self.redis.get(base_key(token))
            if stored is None:
                raise ResumePointGone("this resume point expired: start over")
            await self.redis.expire(base_key(token), self.ttl)
            rows = json.loads(stored)
        base = [str(r[0]) for r in rows]
        positions: dict[str, Position] = {str(r[0]): (_int(r[1]), str(r[2])) for r in rows}
        cursor = Cursor(token, base, positions)
        for ref, (seq, tag) in deltas:
            if isinstance(ref, int):
                if ref >= len(base):
                    raise BadResumePoint("a position refers to no stream of its base")
                stream_id = base[ref]
            else:
                stream_id = ref
            cursor.advance(stream_id, seq, tag)
        return cursor


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise BadResumePoint("a resume point's base is not one this server wrote")
    return value


async def list_prefix(redis: Redis, prefix: str, limit: int) -> list[str]:
    """The streams whose id starts with ``prefix`` (at most ``limit`` + 1, so a caller
    sees when there are more), from the 256 groups' indexes in one round trip; names of
    streams that expired are pruned."""
    lo, hi = f"[{prefix}".encode(), f"[{prefix}".encode() + b"\xff"
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys.names_keys():
            pipe.zrangebylex(key, lo, hi, start=0, num=limit + 1)
        replies = await pipe.execute()
    found = sorted({n.decode() for reply in replies for n in reply})
    alive = await _alive(redis, found)
    dead = [n for n, up in zip(found, alive, strict=True) if not up]
    if dead:
        async with redis.pipeline(transaction=False) as pipe:
            for name in dead:
                pipe.zrem(keys.names_key(name), name)
            await pipe.execute()
    return [n for n, up in zip(found, alive, strict=True) if up][: limit + 1]


async def _alive(redis: Redis, names: Sequence[str]) -> list[bool]:
    if not names:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.exists(keys.meta_key(name))
        return [bool(n) for n in await pipe.execute()]


def covered(stream_id: str, prefixes: Iterable[str]) -> bool:
    return any(stream_id.startswith(p) for p in prefixes)
