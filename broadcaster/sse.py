"""Pure Server-Sent Events encoding: bytes in, bytes out, no I/O.

An event is encoded here once, by the reader, and the same ``bytes`` object is written to
every viewer of its stream.
"""

from __future__ import annotations

import re

from broadcaster.events import Event

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"

# A resume point: the decimal seq, optionally followed by a suffix after a '.', which a
# later version may add (the contract: ids are opaque and begin with the decimal seq).
_RESUME_RE = re.compile(r"^(0|[1-9][0-9]{0,17})(\.[A-Za-z0-9_-]{0,64})?$")


def retry(ms: int) -> bytes:
    """The reconnection delay a browser's EventSource should use."""
    return b"retry: %d\n\n" % ms


def encode(event: Event) -> bytes:
    """One SSE frame. A terminal event carries the closing ``[DONE]`` frame with it."""
    frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (event.seq, event.type.encode(), event.data)
    return frame + DONE if event.terminal else frame


def parse_resume_point(value: str | None) -> int | None:
    """The seq a client has seen up to; 0 when absent; None when malformed."""
    if value is None or value == "":
        return 0
    m = _RESUME_RE.match(value.strip())
    return int(m.group(1)) if m else None
