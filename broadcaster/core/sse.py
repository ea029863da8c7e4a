"""Pure Server-Sent Events encoding: bytes in, bytes out, no I/O.

An event is encoded here once, by the reader, and the same ``bytes`` object is written to
every viewer of its stream.
"""

from __future__ import annotations

from broadcaster.core import names
from broadcaster.core.events import Event

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"


def retry(ms: int) -> bytes:
    """The reconnection delay a browser's EventSource should use."""
    return b"retry: %d\n\n" % ms


def encode(event: Event) -> bytes:
    """One SSE frame, its id ``<seq>.<history tag>``. A terminal event carries the closing
    ``[DONE]`` frame with it."""
    eid = event_id(event.seq, event.tag)
    frame = b"id: %s\nevent: %s\ndata: %s\n\n" % (eid, event.type.encode(), event.data)
    return frame + DONE if event.terminal else frame


def event_id(seq: int, tag: str) -> bytes:
    """An event's ``id:``: ``<seq>.<history tag>`` (``<seq>`` for an untagged event)."""
    return b"%d.%s" % (seq, tag.encode()) if tag else b"%d" % seq


parse_resume_point = names.resume_point
"""The seq a client has seen up to and the history tag it saw there: ``(0, None)`` when
absent, ``(seq, None)`` for a plain seq (or a suffix this version did not issue), None
when malformed (the grammar is ``names.resume_point``'s)."""


def viewers_frame(count: int) -> bytes:
    """The ``data-viewers`` notice: an SSE frame without an id (it is no event of the
    stream, so a reconnecting client's ``Last-Event-ID`` stays that of its last event),
    transient for the AI SDK (not a part of the message)."""
    data = b'{"type":"data-viewers","data":{"viewers":%d},"transient":true}' % count
    return b"event: data-viewers\ndata: " + data + b"\n\n"
