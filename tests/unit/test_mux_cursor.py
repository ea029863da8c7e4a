"""A connection's resume point (``dashboard/cursor.py``) against a model of it: after any sequence
of moves, taken-back moves, the fan-out's own moves of a place that alone moved, places
taken over (a subscription to the stream adopting its mark, a mark again after it), and
rebases, the id says every position that moved since the base, in the order they first
moved, and a place is ``alone`` exactly when its stream is the only one that moved."""

from __future__ import annotations

import random

import pytest

from broadcaster.core import sse
from broadcaster.dashboard.cursor import Cursor, Mark, Place, Position, position_of

STREAMS = ["a", "b", "c", "d-1", "e_2"]


class Model:
    """What the cursor should say, kept the plain way."""

    def __init__(self) -> None:
        self.token = "-"
        self.base: dict[str, Position] = {}
        self.positions: dict[str, Position] = {}
        self.moved: list[str] = []
        self.made: list[str] = []  # streams in the order their marks were made

    def move(self, stream_id: str, position: Position) -> None:
        self.positions[stream_id] = position
        if stream_id not in self.moved:
            self.moved.append(stream_id)

    def rebased(self, token: str, snapshot: dict[str, Position]) -> None:
        self.token, self.base = token, dict(snapshot)
        self.moved = [
            s for s in self.made if s in self.positions and snapshot.get(s) != self.positions[s]
        ]

    def id(self) -> bytes:
        if not self.moved:
            return self.token.encode()
        index = {s: i for i, s in enumerate(sorted(self.base))}
        deltas = [
            b"%s=%s" % (str(index[s]).encode() if s in index else b"~" + s.encode(), eid(p))
            for s, p in ((s, self.positions[s]) for s in self.moved)
        ]
        return self.token.encode() + b"." + b",".join(deltas)


class Taker:
    """A place of another class (as the connection's subscription to a stream is)."""

    __slots__ = ("alone", "head", "moved", "other", "suffix")


def eid(position: Position) -> bytes:
    return sse.event_id(*position)


def check(cursor: Cursor, model: Model) -> None:
    assert cursor.id == model.id()
    assert cursor.positions == model.positions
    assert [m for m in cursor.marks.values() if m.alone] == (
        [cursor.marks[model.moved[0]]] if len(model.moved) == 1 else []
    )


@pytest.mark.parametrize("seed", range(40))
def test_the_id_and_the_alone_mark_follow_every_way_a_position_moves(seed: int) -> None:
    rnd = random.Random(seed)
    cursor, model = Cursor.empty(), Model()
    seqs = dict.fromkeys(STREAMS, 0)
    pending: tuple[str, dict[str, Position]] | None = None

    def mark(stream_id: str) -> Place:
        if stream_id not in cursor.marks:
            model.made.append(stream_id)
        return cursor.mark(stream_id)

    for _ in range(60):
        stream_id = rnd.choice(STREAMS)
        seqs[stream_id] += rnd.randint(1, 3)
        position = (seqs[stream_id], rnd.choice(["", "0abf6c08", "1bcd2e3f"]))
        op = rnd.random()
        if op < 0.4:
            m = mark(stream_id)
            assert cursor.move(m, eid(position)) == (model.moved in ([], [stream_id]))
            model.move(stream_id, position)
        elif op < 0.55:  # the fan-out's usual delivery: only a mark that alone moved
            m = mark(stream_id)
            if m.alone:
                m.suffix = eid(position)
                model.move(stream_id, position)
        elif op < 0.7:  # a move the socket refused, taken back
            m = mark(stream_id)
            before = (cursor.id, cursor.positions, m.alone)
            suffix, moved = m.suffix, m.moved
            cursor.move(m, eid(position))
            cursor.undo(m, suffix, moved)
            assert (cursor.id, cursor.positions, m.alone) == before
        elif op < 0.78:  # a subscription adopts the place, or a mark takes it back
            old, new = mark(stream_id), rnd.choice([Mark, Taker])()
            cursor.adopt(stream_id, new)
            assert cursor.marks[stream_id] is new and all(m is not old for m in cursor.moved)
        elif op < 0.88 and pending is None:  # a base taken, written later
            pending = cursor.snapshot()
        elif pending is not None:
            cursor.rebased(*pending)
            model.rebased(*pending)
            pending = None
        check(cursor, model)


def test_a_marks_position_is_read_from_its_event_id() -> None:
    cursor = Cursor("0123456789abcdef", ["a", "b"], {"a": (7, "0abf6c08"), "b": (10, "")})
    assert cursor.position("a") == (7, "0abf6c08") and cursor.position("b") == (10, "")
    assert position_of(cursor.mark("c")) is None and cursor.position("d") is None
    assert cursor.id == b"0123456789abcdef" and not any(m.alone for m in cursor.marks.values())
    cursor.advance("b", 11, "")
    assert cursor.id == b"0123456789abcdef.1=11" and cursor.marks["b"].alone
