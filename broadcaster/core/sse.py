"""Pure Server-Sent Events encoding: bytes in, bytes out, no I/O.

An event is encoded here once, by the reader, and the same ``bytes`` object is written to
every viewer of its stream.
"""

from __future__ import annotations

from collections.abc import Callable

from broadcaster.core import names
from broadcaster.core.events import Event

Writer = Callable[[bytes], bool]
"""Writes SSE bytes to one viewer's socket at once, after everything it was given before;
returns False, having written nothing, when it cannot (the socket's buffer is full). The
transport makes it; the fan-out writes through it."""

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"
DRAINING = b": draining"
"""The notice a draining front-end ends each response with (after its ``retry:``)."""


def keepalive(seq: int) -> bytes:
    """The keepalive of a viewer that asked to know where the stream is
    (``caught_up=1``): a comment every SSE parser ignores, with the stream's tail seq."""
    return b": keepalive %d\n\n" % seq


def caught_up(seq: int) -> bytes:
    """The mark sent once when a viewer that asked for it (``caught_up=1``) has been
    sent everything up to the live tail (``seq``): a transient ``data-caught-up`` chunk
    without an id (no event of the stream: ``Last-Event-ID`` stays its last event's)."""
    data = b'{"type":"data-caught-up","data":{"seq":%d},"transient":true}' % seq
    return b"event: data-caught-up\ndata: " + data + b"\n\n"


def farewell(retry_ms: int) -> bytes:
    """What a draining front-end ends a response with: the ``retry:`` the client waits
    before it reconnects (jittered per response), and the notice, a comment."""
    return b"retry: %d\n%s %d\n\n" % (retry_ms, DRAINING, retry_ms)


def token_ended(reason: str) -> bytes:
    """What ends a response whose token expired or was revoked (``reason``): a transient
    ``data-token-expired`` chunk without an id (no event of the stream: the client's
    ``Last-Event-ID`` stays its last event's, to resume from with a new token), then the
    response's end, without ``[DONE]`` (docs/security.md, "Token expiry and
    revocation")."""
    data = b'{"type":"data-token-expired","data":{"reason":"%s"},"transient":true}' % (
        reason.encode()
    )
    return b"event: data-token-expired\ndata: " + data + b"\n\n"


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
