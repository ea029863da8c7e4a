"""A dashboard connection's frames (``GET /v1/events``): each event as the single-stream
route sends it, its ``data`` wrapped as ``{"stream", "seq", "event"}``, and a live run's
events in the forms every connection following the stream shares (made once per run,
``Topic.shared``); pure. The id, the connection's own part, is ``feed.Connection``'s.
"""

from __future__ import annotations

import json

from broadcaster.core import sse
from broadcaster.core.events import Event, malformed
from broadcaster.fanout.subscription import Run


def frame(stream_id: str, event: Event) -> bytes:
    """One event as a frame of the connection, without its id."""
    return b'event: %s\ndata: {"stream":%s,"seq":%d,"event":%s}\n\n' % (
        event.type.encode(),
        json.dumps(stream_id).encode(),
        event.seq,
        event.data,
    )


def run_events(run: Run) -> list[Event]:
    """The events of a run of SSE frames (``id: <seq>.<tag>``, ``event:``, ``data:``). A
    frame that cannot be read so (the hub lets no such message through: this is for
    whatever else might) ends them, with an ``error`` in its place (``events.malformed``),
    as a malformed stored event is read."""
    out = []
    seq = run[0]
    for block in run[2].split(b"\n\n"):
        if not block.startswith(b"id: "):
            continue
        parts = _lines(block)
        if parts is None:
            out.append(malformed(seq))
            break
        eid, event_line, data_line = parts
        number, _, tag = eid.partition(b".")
        seq = int(number) + 1
        event = event_line[7:].decode(errors="replace")
        out.append(Event(seq - 1, event, data_line[6:], tag.decode(errors="replace")))
    return out


def _lines(block: bytes) -> tuple[bytes, bytes, bytes] | None:
    """A frame's id (without ``id: ``), ``event:`` line and ``data:`` line; None unless
    it is the three lines the append script writes."""
    parts = block.split(b"\n", 2)
    if (
        len(parts) != 3
        or not parts[1].startswith(b"event: ")
        or not parts[2].startswith(b"data: ")
        or b"\n" in parts[2]
        or not parts[0][4:].partition(b".")[0].isdigit()
    ):
        return None
    return parts[0][4:], parts[1], parts[2]


Framed = tuple[bytes, bytes]
"""An event of a live run as connections send it: its own id (how a delta of the
connection's id ends), and its frame without the id: what every connection following the
stream shares."""

Alone = tuple[bytes, bytes, int]
"""A run of one event (the usual one) as a connection's chunk ends: the event's own id,
what follows ``id: <head>`` in the chunk (that id, the frame, the chunk's end) and the
chunk's size less ``len(head)``. For a connection whose id is its place's head and the
event's id (its stream alone moved since the base), the chunk is
``%x\r\nid: <head><rest>``: one step per connection."""

Shared = tuple[list[Framed], None] | tuple[None, Alone]
"""A run as the connections following its stream share it, made once per run: its
events ``Framed``, or a one-event run ``Alone``."""


TERMINAL_TAIL = 2 + len(sse.DONE)
"""What follows the ``data:`` line of a terminal event in its run: its blank line, then
``[DONE]``."""


def opening(stream_id: str) -> bytes:
    """How the ``data`` of the stream's frames begins."""
    return b'{"stream":%s,"seq":' % json.dumps(stream_id).encode()


def _shared(opening: bytes, run: Run) -> Shared:
    """The run's ``Shared`` form, made by the first connection of its stream to get it
    (and kept in ``Topic.shared`` for the others): a run of one event sliced with two
    searches into its ``Alone`` form (by ``bytes.join``: %-formatting took a tenth
    more), a longer one ``_framed``."""
    if run[0] != run[1]:
        return _framed(opening, run), None
    frames = run[2]
    eol = frames.find(b"\n")
    data = frames.find(b"\n", eol + 1) + 7  # past "\ndata: ", after its ``event:`` line
    if not (frames.startswith(b"event: ", eol + 1) and frames.startswith(b"\ndata: ", data - 7)):
        return _framed(opening, run), None  # unreadable: ``_framed`` says so
    end = len(frames) - (TERMINAL_TAIL if run[3] else 2)
    rest = b"".join(
        (
            frames[4:data],  # "<id>\nevent: <type>\ndata: "
            opening,
            b"%d" % run[0],
            b',"event":',
            frames[data:end],
            b"}\n\n\r\n",
        )
    )
    eid = frames[4:eol]
    return None, (eid, rest, len(rest) + 2)  # + "id: " - "\r\n"


def framed(made: Shared) -> list[Framed]:
    """A run's events ``Framed``, whatever form it was shared in."""
    if made[0] is not None:
        return made[0]
    eid, rest, _ = made[1]
    return [(eid, rest[len(eid) + 1 : -2])]


def _framed(opening: bytes, run: Run) -> list[Framed]:
    """``frame`` of each event of the run's SSE frames (as the append script makes them:
    ``id: <seq>[.<tag>]``, ``event:``, one ``data:`` line, and ``[DONE]`` after a terminal
    event), by slicing bytes: no event is decoded on the way."""
    out: list[Framed] = []
    for block in run[2].split(b"\n\n"):
        if not block.startswith(b"id: "):
            continue
        parts = _lines(block)
        if parts is None:  # unreadable (``run_events``): an error in its place, and no more
            seq = int(out[-1][0].partition(b".")[0]) + 1 if out else run[0]
            error = malformed(seq)
            data = b'%s%d,"event":%s}' % (opening, seq, error.data)
            out.append((b"%d" % seq, b"event: error\ndata: %s\n\n" % data))
            break
        eid, event_line, data_line = parts
        seq_b = eid.partition(b".")[0]
        body = b'%s\ndata: %s%s,"event":%s}\n\n' % (event_line, opening, seq_b, data_line[6:])
        out.append((eid, body))
    return out
