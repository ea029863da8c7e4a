"""Pure Server-Sent Events encoding: bytes in, bytes out, no I/O.

An event is encoded here once, by the reader, and the same ``bytes`` object is written to
every viewer of its stream.
"""

from __future__ import annotations

import re

from broadcaster.core.events import Event

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"

# A resume point: the decimal seq, optionally followed by a suffix after a '.', which a
# later version may add (the contract: ids are opaque and begin with the decimal seq).
_RESUME_RE = re.compile(r"^(0|[1-9][0-9]{0,17})(\.[A-Za-z0-9_-]{0,64})?$")


def retry(ms: int) -> bytes:
    """The reconnection delay a browser's EventSource should use."""
    return b"retry: %d\n\n" % ms


_TAG_RE = re.compile(r"^\.([0-9a-f]{8})$")


def encode(event: Event) -> bytes:
    """One SSE frame, its id ``<seq>.<history tag>``. A terminal event carries the closing
    ``[DONE]`` frame with it."""
    eid = event_id(event.seq, event.tag)
    frame = b"id: %s\nevent: %s\ndata: %s\n\n" % (eid, event.type.encode(), event.data)
    return frame + DONE if event.terminal else frame


def event_id(seq: int, tag: str) -> bytes:
    """An event's ``id:``: ``<seq>.<history tag>`` (``<seq>`` for an untagged event)."""
    return b"%d.%s" % (seq, tag.encode()) if tag else b"%d" % seq


def parse_resume_point(value: str | None) -> tuple[int, str | None] | None:
    """The seq a client has seen up to and the history tag it saw there: ``(0, None)``
    when absent, ``(seq, None)`` for a plain seq (or a suffix this version did not issue),
    None when malformed."""
    if value is None or value == "":
        return 0, None
    m = _RESUME_RE.match(value.strip())
    if not m:
        return None
    tag = _TAG_RE.match(m.group(2) or "")
    return int(m.group(1)), tag.group(1) if tag else None
