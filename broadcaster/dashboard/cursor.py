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
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from redis.asyncio import Redis

from broadcaster.core import keys, names, sse

REBASE = 16
"""Moved positions an id carries before the connection writes a new base."""

Position = tuple[int, str]
"""(seq, history tag) of the last event of a stream a client was sent."""


class BadResumePoint(ValueError):
    """Not a resume point this server issued (400)."""


class ResumePointGone(LookupError):
    """A resume point whose base Redis no longer holds (its TTL passed): 409."""


class Place(Protocol):
    """One stream's place in a connection's resume point: its position, and how an id
    says it. A ``Mark``, or the connection's subscription to the stream itself (it takes
    over the mark, ``Cursor.adopt``), so a live event moves it with no lookup and no
    object between (per-connection dicts touched for each delivery were a large share of
    a dashboard's fan-out: docs/performance.md).

    While a place is ``alone`` (its stream alone moved since the base), the id is its
    ``head`` and ``suffix``: the fan-out moves it by setting ``suffix``, touching neither
    the cursor nor its list of moved places."""

    suffix: bytes
    """The position's event id (``<seq>.<tag>``, b"" for none): how the stream's delta
    ends."""
    head: bytes
    """``<token>.<ref>``, where ``<ref>`` is how a delta names the stream (``<index in the
    base>=`` or ``~<stream id>=``): the id, less ``suffix``, while ``alone``."""
    moved: bool
    """Its position moved since the base (it is in ``Cursor.moved``)."""
    alone: bool
    """It alone moved since the base."""


class Mark:
    """The place of a stream the connection does not follow (yet, or any more)."""

    __slots__ = ("alone", "head", "moved", "suffix")

    def __init__(self) -> None:
        self.suffix = b""
        self.head = b""
        self.moved = self.alone = False


def position_of(place: Place) -> Position | None:
    """(seq, history tag), read from the place's ``suffix`` (not for a delivery's path)."""
    if not place.suffix:
        return None
    seq, _, tag = place.suffix.partition(b".")
    return int(seq), tag.decode()


class Cursor:
    """One connection's positions, and the id that says them (bytes, as sent)."""

    __slots__ = ("_dot", "_id", "_index", "_token", "base", "marks", "moved", "token")

    def __init__(self, token: str, base: list[str], positions: dict[str, Position]) -> None:
        self.marks: dict[str, Place] = {}
        self._start(token, base)
        for stream_id, position in positions.items():  # where the base puts them
            self.mark(stream_id).suffix = sse.event_id(*position)

    def _start(self, token: str, base: list[str]) -> None:
        """Name the base ``token`` (holding ``base``): nothing moved since it yet."""
        self.token, self._token = token, token.encode()
        self._dot = self._token + b"."
        self.base = base
        """The streams of the base, sorted: a delta names one by its index here."""
        self._index = {s: i for i, s in enumerate(base)}
        self.moved: list[Place] = []
        """The places whose position moved since the base, in the order they first moved."""
        for stream_id, mark in self.marks.items():
            self._name(stream_id, mark)
            mark.moved = mark.alone = False
        self._id: bytes | None = None
        """The id, while more than one position moved (made when first asked for)."""

    def _name(self, stream_id: str, mark: Place) -> None:
        index = self._index.get(stream_id)
        ref = b"%d=" % index if index is not None else b"~%s=" % stream_id.encode()
        mark.head = self._dot + ref

    @classmethod
    def empty(cls) -> Cursor:
        return cls("-", [], {})

    def mark(self, stream_id: str) -> Place:
        """The stream's place (a ``Mark`` with no position, the first time it is asked
        for)."""
        mark = self.marks.get(stream_id)
        if mark is None:
            mark = self.marks[stream_id] = Mark()
            self._name(stream_id, mark)
        return mark

    def adopt(self, stream_id: str, place: Place) -> None:
        """From now on ``place`` is the stream's place, as the one before it was."""
        old = self.mark(stream_id)
        place.suffix, place.head, place.moved, place.alone = (
            old.suffix,
            old.head,
            old.moved,
            old.alone,
        )
        self.marks[stream_id] = place
        if old.moved:
            self.moved[self.moved.index(old)] = place

    def position(self, stream_id: str) -> Position | None:
        mark = self.marks.get(stream_id)
        return None if mark is None else position_of(mark)

    @property
    def positions(self) -> dict[str, Position]:
        """Every stream's position (made on each call: not for a delivery's path)."""
        return {s: p for s, m in self.marks.items() if (p := position_of(m)) is not None}

    def advance(self, stream_id: str, seq: int, tag: str) -> None:
        self.move(self.mark(stream_id), sse.event_id(seq, tag))

    def move(self, mark: Place, suffix: bytes) -> bool:
        """The mark's stream is at the event ``suffix`` (its id, made once for every
        connection following the stream). True when it alone moved since the base: the
        id is then ``mark.head + suffix`` (the usual dashboard: one of its streams is
        busy)."""
        mark.suffix = suffix
        self._id = None
        if not mark.moved:
            mark.moved = True
            moved = self.moved
            moved.append(mark)
            if len(moved) == 1:
                mark.alone = True
            elif len(moved) == 2:
                moved[0].alone = False
        return mark.alone

    def undo(self, mark: Place, suffix: bytes, moved: bool) -> None:
        """Take a ``move`` back: the mark as it was (``suffix``, ``moved``)."""
        mark.suffix = suffix
        self._id = None
        if mark.moved and not moved:
            mark.moved = mark.alone = False
            self.moved.remove(mark)
            if len(self.moved) == 1:
                self.moved[0].alone = True

    @property
    def id(self) -> bytes:
        moved = self.moved
        if len(moved) == 1:
            return moved[0].head + moved[0].suffix
        if self._id is None:
            dot = len(self._dot)  # a delta is a mark's head less the dot, and its suffix
            self._id = (
                self._dot + b",".join(m.head[dot:] + m.suffix for m in moved)
                if moved
                else self._token
            )
        return self._id

    def snapshot(self) -> tuple[str, dict[str, Position]]:
        """A new base: its token and the positions it holds (to write, then ``rebased``)."""
        return secrets.token_hex(8), self.positions

    def rebased(self, token: str, snapshot: dict[str, Position]) -> None:
        """The base ``token`` (holding ``snapshot``) is written: ids name it from now on,
        with what moved since it was taken."""
        self._start(token, sorted(snapshot))
        for stream_id, mark in self.marks.items():
            position = position_of(mark)
            if position is not None and snapshot.get(stream_id) != position:
                mark.moved = True
                self.moved.append(mark)
        if len(self.moved) == 1:
            self.moved[0].alone = True


def parse(raw: str, most: int | None = None) -> tuple[str, list[tuple[int | str, Position]]]:
    """An id's base token and its deltas (a base index or a stream id, and a position);
    BadResumePoint unless this server could have issued it: at most
    ``names.MUX_RESUME_POINT_MAX`` characters, and at most ``most`` deltas (a connection
    follows no more streams)."""
    split = names.mux_resume_point(raw)
    if split is None:
        raise BadResumePoint("not a resume point of /v1/events")
    token, rest = split
    parts = rest.split(",", -1 if most is None else most) if rest else []
    if most is not None and len(parts) > most:
        raise BadResumePoint(f"a resume point names at most {most} positions")
    deltas: list[tuple[int | str, Position]] = []
    for part in parts:
        delta = names.mux_delta(part)
        if delta is None:
            raise BadResumePoint(f"malformed position {part[:80]!r}")
        ref, seq, tag = delta
        deltas.append((ref, (seq, tag)))
    return token, deltas


class Bases:
    """Where connections keep their bases (one key each, expiring with ``ttl``)."""

    def __init__(self, redis: Redis, ttl: int) -> None:
        self.redis = redis
        self.ttl = ttl

    async def write(self, token: str, positions: dict[str, Position]) -> None:
        rows = [[s, seq, tag] for s, (seq, tag) in sorted(positions.items())]
        await self.redis.set(
            keys.mux_base_key(token), json.dumps(rows, separators=(",", ":")), ex=self.ttl
        )

    async def resume(
        self, raw: str, keep: Callable[[str], bool] = lambda _: True, most: int | None = None
    ) -> Cursor:
        """The cursor an id names (its base read from Redis), holding only the positions
        of the streams ``keep`` accepts, and at most ``most`` of them (those of the
        lowest names): the rest are dropped unseen, never looked up. BadResumePoint for a
        malformed id, one of more than ``most`` deltas, or a reference outside its base;
        ResumePointGone for a base Redis no longer holds."""
        token, deltas = parse(raw, most)
        rows: list[list[object]] = []
        if token != "-":
            stored = await self.redis.get(keys.mux_base_key(token))
            if stored is None:
                raise ResumePointGone("this resume point expired: start over")
            await self.redis.expire(keys.mux_base_key(token), self.ttl)
            rows = json.loads(stored)
        base = [str(r[0]) for r in rows]
        based: dict[str, Position] = {
            str(r[0]): (_int(r[1]), str(r[2])) for r in rows if keep(str(r[0]))
        }
        moved: dict[str, Position] = {}  # since the base, in the order they first moved
        for ref, position in deltas:
            if isinstance(ref, int) and ref >= len(base):
                raise BadResumePoint("a position refers to no stream of its base")
            stream_id = base[ref] if isinstance(ref, int) else ref
            if keep(stream_id):
                moved[stream_id] = position
        if most is not None and len(named := based.keys() | moved.keys()) > most:
            kept = set(sorted(named)[:most])
            based = {s: p for s, p in based.items() if s in kept}
            moved = {s: p for s, p in moved.items() if s in kept}
        cursor = Cursor(token, base, based)
        for stream_id, (seq, tag) in moved.items():
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
