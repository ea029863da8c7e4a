"""The frames of a connection following many streams, made from a live run's bytes
(``dashboard/feed.py``): the same bytes as those made from the events (what a replay sends),
and ids that advance the connection's resume point, taken back when the socket refuses."""

from __future__ import annotations

import pytest

from broadcaster.core import sse
from broadcaster.core.events import Event
from broadcaster.dashboard.cursor import Cursor
from broadcaster.dashboard.feed import Connection, Follow
from broadcaster.dashboard.wrapping import _framed, _shared, frame, framed, opening
from broadcaster.fanout.subscription import Topic


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


def test_frames_sliced_from_a_run_are_the_frames_made_from_its_events() -> None:
    run = run_of(events())
    stream = 'jobs-"42"'
    assert [body for _, body in _framed(opening(stream), run)] == [
        frame(stream, e) for e in events()
    ]
    assert [suffix for suffix, _ in _framed(opening(stream), run)] == [
        b"7.0abf6c08",
        b"8.1bcd2e3f",
        b"9.2cde3f40",
        b"10",
    ]


def test_encode_advances_the_resume_point_and_undo_takes_it_back() -> None:
    conn = Connection.__new__(Connection)
    conn.cursor = Cursor.empty()
    mark = conn.cursor.mark("s")
    framed = _framed(opening("s"), run_of(events()[:2]))
    data = conn.encode(mark, framed)
    assert data == (
        b"id: -.~s=7.0abf6c08\n" + framed[0][1] + b"id: -.~s=8.1bcd2e3f\n" + framed[1][1]
    )
    assert conn.cursor.positions["s"] == (8, "1bcd2e3f")
    conn.cursor.undo(mark, b"7.0abf6c08", True)
    assert conn.cursor.id == b"-.~s=7.0abf6c08" and mark.alone
    conn.cursor.undo(mark, b"", False)
    assert conn.cursor.id == b"-" and "s" not in conn.cursor.positions and not mark.alone
    one = conn.encode(mark, framed[:1])
    assert one == b"id: -.~s=7.0abf6c08\n" + framed[0][1]


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
        framed = _framed(opening("x"), run_of(run_events))
        sse_bytes = b"".join(
            b"id: %s\n%s" % (ident, body) for ident, (_, body) in zip(ids, framed, strict=True)
        )
        assert conn.chunk(mark, framed) == b"%x\r\n%s\r\n" % (len(sse_bytes), sse_bytes)
        assert conn.cursor.id == ids[-1]


@pytest.mark.parametrize("event", events(), ids=lambda e: f"{e.type}-{e.tag or 'untagged'}")
def test_a_one_event_run_is_shared_alone_and_frames_as_a_longer_run_does(event: Event) -> None:
    """A run of one event (the usual one) takes a shorter way: its ``Alone`` form, whose
    frame is the one a longer run's slicing makes (the terminal event's ``[DONE]`` left
    out, an untagged id without tag), and whose chunk ends with the event's id and frame."""
    stream = 'jobs-"42"'
    run = run_of([event])
    made = _shared(opening(stream), run)
    assert made[0] is None and made[1] is not None
    eid, rest, size = made[1]
    assert (
        framed(made)
        == _framed(opening(stream), run)
        == [(sse.event_id(event.seq, event.tag), frame(stream, event))]
    )
    assert eid == sse.event_id(event.seq, event.tag)
    assert rest == b"%s\n%s\r\n" % (eid, frame(stream, event))
    head = b"0123456789abcdef.3="
    chunk = b"%x\r\nid: %s%s" % (len(head) + size, head, rest)
    sse_bytes = b"id: %s%s\n%s" % (head, eid, frame(stream, event))
    assert chunk == b"%x\r\n%s\r\n" % (len(sse_bytes), sse_bytes)


def test_a_longer_run_is_shared_framed() -> None:
    made = _shared(opening("s"), run_of(events()[:2]))
    assert made[1] is None and framed(made) == _framed(opening("s"), run_of(events()[:2]))


def _following(stream: str, written: list[bytes], takes: list[bool]) -> tuple[Connection, Follow]:
    """A connection following ``stream`` whose socket takes a write while ``takes`` says
    so (each write pops the next answer; True once it is empty)."""
    conn = Connection.__new__(Connection)
    conn.cursor = Cursor.empty()
    conn.direct = None
    conn._waker = None
    topic = Topic(stream, b"c", 0, "")
    follow = Follow(100, topic)
    follow.conn, follow.opening, follow.last = conn, opening(stream), 6
    conn.cursor.adopt(stream, follow)
    topic.subs.add(follow)

    def write(chunk: bytes) -> bool:
        ok = takes.pop(0) if takes else True
        if ok:
            written.append(chunk)
        return ok

    conn.direct = write
    return conn, follow


def test_the_fan_outs_deliveries_are_the_chunks_of_the_connections_ids() -> None:
    """Whichever way a delivery takes (the usual one: one event of the stream that alone
    moved; a longer run; another stream moved too), the socket gets ``chunk``'s bytes
    and the resume point names the event; a refused write changes nothing and leaves
    the run to the connection's task."""
    written: list[bytes] = []
    takes: list[bool] = []
    conn, follow = _following("a", written, takes)
    other = conn.cursor.mark("b")
    evs = events()

    def expected(ids: list[bytes], run_events: list[Event]) -> bytes:
        data = b"".join(
            b"id: %s\n%s" % (i, frame("a", e)) for i, e in zip(ids, run_events, strict=True)
        )
        return b"%x\r\n%s\r\n" % (len(data), data)

    follow.deliver(run_of(evs[:1]))  # the first move: not yet alone
    follow.deliver(run_of(evs[1:2]))  # alone: the usual way
    assert written == [
        expected([b"-.~a=7.0abf6c08"], evs[:1]),
        expected([b"-.~a=8.1bcd2e3f"], evs[1:2]),
    ]
    assert conn.cursor.id == b"-.~a=8.1bcd2e3f" and follow.last == 8
    takes.append(False)  # the socket is full: nothing moves, the run waits in the buffer
    follow.deliver(run_of(evs[2:3]))
    assert len(written) == 2 and conn.cursor.id == b"-.~a=8.1bcd2e3f" and follow.last == 8
    assert conn.direct is None and follow.take() == [run_of(evs[2:3])]
    conn.direct = lambda chunk: written.append(chunk) is None
    conn.cursor.move(other, b"3.0abf6c08")  # another stream moved too
    follow.deliver(run_of(evs[2:3]))
    assert written[-1] == expected([b"-.~a=9.2cde3f40,~b=3.0abf6c08"], evs[2:3])
    assert follow.ended and conn.cursor.positions == {"a": (9, "2cde3f40"), "b": (3, "0abf6c08")}


def test_a_longer_run_to_the_stream_that_alone_moved_gets_an_id_per_event() -> None:
    written: list[bytes] = []
    _, follow = _following("a", written, [])
    evs = events()
    follow.deliver(run_of(evs[:1]))
    follow.deliver(run_of(evs[1:3]))
    data = b"id: -.~a=8.1bcd2e3f\n%sid: -.~a=9.2cde3f40\n%s" % (
        frame("a", evs[1]),
        frame("a", evs[2]),
    )
    assert written[-1] == b"%x\r\n%s\r\n" % (len(data), data)
    assert follow.last == 9 and follow.ended
