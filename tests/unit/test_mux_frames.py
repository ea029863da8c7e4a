"""The frames of a connection following many streams, made from a live run's bytes
(``fanout/mux.py``): the same bytes as those made from the events (what a replay sends),
and ids that advance the connection's resume point, taken back when the socket refuses."""

from __future__ import annotations

import json

import pytest

from broadcaster.core import sse
from broadcaster.core.events import Event
from broadcaster.core.mux import Cursor
from broadcaster.fanout.mux import Connection, _framed, frame


def events() -> list[Event]:
    return [
        Event(7, "text-delta", b'{"type":"text-delta","id":"t0","delta":"a\\n\\"b"}', "0abf6c08"),
        Event(8, "data-x", b'{"type":"data-x","data":{"s":"id: 3\\n\\n"}}', "1bcd2e3f"),
        Event(9, "finish", b'{"type":"finish"}', "2cde3f40"),
        Event(10, "data-old", b'{"type":"data-old"}', ""),  # stored before history tags
    ]


def run_of(evs: list[Event]) -> tuple[int, int, bytes, bool]:
    """A live run as the append script publishes it."""
    return evs[0].seq, evs[-1].seq, b"".join(sse.encode(e) for e in evs), evs[-1].terminal


def sid(stream: str) -> bytes:
    return json.dumps(stream).encode()


def test_frames_sliced_from_a_run_are_the_frames_made_from_its_events() -> None:
    run = run_of(events())
    stream = 'jobs-"42"'
    assert [(pos, body) for pos, _, body in _framed(sid(stream), run)] == [
        ((e.seq, e.tag), frame(stream, e)) for e in events()
    ]
    assert [suffix for _, suffix, _ in _framed(sid(stream), run)] == [
        b"7.0abf6c08",
        b"8.1bcd2e3f",
        b"9.2cde3f40",
        b"10",
    ]


def test_encode_advances_the_resume_point_and_undo_takes_it_back() -> None:
    conn = Connection.__new__(Connection)
    conn.cursor = Cursor.empty()
    mark = conn.cursor.mark("s")
    framed = _framed(sid("s"), run_of(events()[:2]))
    data = conn.encode(mark, framed)
    assert data == (
        b"id: -.~s=7.0abf6c08\n" + framed[0][2] + b"id: -.~s=8.1bcd2e3f\n" + framed[1][2]
    )
    assert conn.cursor.positions["s"] == (8, "1bcd2e3f")
    conn.cursor.undo(mark, (7, "0abf6c08"), b"7.0abf6c08", True)
    assert conn.cursor.id == b"-.~s=7.0abf6c08"
    conn.cursor.undo(mark, None, b"", False)
    assert conn.cursor.id == b"-" and "s" not in conn.cursor.positions
    one = conn.encode(mark, framed[:1])
    assert one == b"id: -.~s=7.0abf6c08\n" + framed[0][2]


def test_a_chunk_is_the_encoded_frames_as_one_http_chunk() -> None:
    """What the fan-out writes to a caught-up connection: ``encode``'s bytes as an
    HTTP/1.1 chunk, whether its stream alone moved since the base or others did too."""
    conn = Connection.__new__(Connection)
    conn.cursor = Cursor.empty()
    a, b = conn.cursor.mark("a"), conn.cursor.mark("b")
    evs = events()
    cases = [
        (a, evs[:1], [b"-.~a=7.0abf6c08"]),  # alone: its head and the event id
        (b, evs[1:2], [b"-.~a=7.0abf6c08,~b=8.1bcd2e3f"]),  # two moved: the whole id
        (a, evs[1:3], [b"-.~a=8.1bcd2e3f,~b=8.1bcd2e3f", b"-.~a=9.2cde3f40,~b=8.1bcd2e3f"]),
    ]
    for mark, run_events, ids in cases:
        framed = _framed(sid("x"), run_of(run_events))
        sse_bytes = b"".join(
            b"id: %s\n%s" % (ident, body) for ident, (_, _, body) in zip(ids, framed, strict=True)
        )
        assert conn.chunk(mark, framed) == b"%x\r\n%s\r\n" % (len(sse_bytes), sse_bytes)
        assert conn.cursor.id == ids[-1]


@pytest.mark.parametrize("event", events(), ids=lambda e: f"{e.type}-{e.tag or 'untagged'}")
def test_a_one_event_run_is_sliced_as_a_longer_run_is(event: Event) -> None:
    """A run of one event (the usual one) takes a shorter way: the same frame, the
    terminal event's ``[DONE]`` left out as in a longer run, an untagged id without tag."""
    stream = "jobs-42"
    assert _framed(sid(stream), run_of([event])) == [
        ((event.seq, event.tag), sse.event_id(event.seq, event.tag), frame(stream, event))
    ]
