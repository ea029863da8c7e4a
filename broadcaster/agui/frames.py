"""AG-UI events as SSE frames, the AI SDK frames they are made from, and the AG-UI
resume point: pure, bytes in and bytes out.

An AG-UI frame is ``id: <id>\\ndata: <json>\\n\\n`` (stock AG-UI clients read only
``data:``). The events one chunk maps to share its id: the last carries the chunk's own
``<seq>.<history tag>``, the ones before it ``<seq>.<tag>:<n>`` (``n`` from 0), so a
``Last-Event-ID`` names a point between any two AG-UI events, and one that ends a chunk is
also a resume point of the AI SDK view of the same generation. Frames that are no event of
the log (the prelude that re-opens state on a resumed connection, a run's end at a wait)
carry the id of the resume point they leave the client at: its own ``Last-Event-ID``
(``0`` from the start), or the id of the chunk the run waits after.
"""

from __future__ import annotations

import json
import re
from typing import Any

from broadcaster.core import names
from broadcaster.core.events import dumps_in_pieces

AgEvent = dict[str, Any]


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""One encoder for every event: ``json.dumps`` with arguments builds one per call."""


def dumps(event: AgEvent) -> bytes:
    return _ENCODE(event).encode()


def encode(events: list[AgEvent], eid: bytes) -> bytes:
    """The frames of the AG-UI events one chunk maps to; ``eid`` its AI SDK id."""
    last = len(events) - 1
    return b"".join(
        b"id: %s\ndata: %s\n\n" % (eid if n == last else b"%s:%d" % (eid, n), dumps(event))
        for n, event in enumerate(events)
    )


_DELTA = (
    rb'\{"type":"text-delta","id":"([A-Za-z0-9_.:-]{1,64})","delta":("[^"\\]*(?:\\.[^"\\]*)*")\}'
)
"""A text delta as the event log stores it (compact JSON, ``type`` first), and nothing
more: its part id and its delta, still a JSON string. (The delta's string as runs of
plain characters between escapes: one step per run, not one alternative per character,
which is slower: docs/performance.md.)"""
_TEXT_DELTA = re.compile(_DELTA)


def content_frame(eid: bytes, message_id: str, delta: bytes) -> bytes:
    """The ``TEXT_MESSAGE_CONTENT`` frame of a text delta (``delta`` a JSON string, as
    ``dumps`` would write it: both keep non-ASCII characters as they are)."""
    return b'id: %s\ndata: {"type":"TEXT_MESSAGE_CONTENT","messageId":"%s","delta":%s}\n\n' % (
        eid,
        message_id.encode(),
        delta,
    )


def encode_at(events: list[AgEvent], eid: bytes) -> bytes:
    """Frames of events that are no event of the log (the prelude, a run's end at a
    wait), each with ``eid``: the resume point they leave the client at, so that a
    reconnection from any of them sends them again, then what follows. Each is encoded a
    piece at a time (a ``MESSAGES_SNAPSHOT`` holds a whole thread, which one call would
    encode holding the interpreter's lock all along, in whichever thread it runs)."""
    return b"".join(
        b"id: %s\ndata: %s\n\n" % (eid, dumps_in_pieces(event, _ENCODE)) for event in events
    )


def token_ended(reason: str) -> bytes:
    """The last words of an AG-UI response whose token expired or was revoked
    (``reason``): a ``CUSTOM`` event named ``token-expired`` (AG-UI has no event of its
    own for it; stock clients pass a custom event by), with no ``id:`` (no event of the
    run: a client that reconnects with a new token and its ``Last-Event-ID`` gets what
    follows its last event), then the response's end, with no ``RUN_FINISHED``."""
    value = b'{"reason":"%s"}' % reason.encode()
    return b'data: {"type":"CUSTOM","name":"token-expired","value":%s}\n\n' % value


def drop(frames: bytes, count: int) -> bytes:
    """``frames`` without its first ``count`` frames."""
    if count <= 0:
        return frames
    parts = frames.split(b"\n\n")
    return b"\n\n".join(parts[count:])


Frame = tuple[int, bytes, bytes, bytes, bytes]
"""An AI SDK event read: ``(seq, id, data, part, delta)``. A ``text-delta`` as the event
log stores it and with no other field (most of a stream's events) is read without parsing
its JSON: ``part`` its part id, ``delta`` its delta, still a JSON string; ``part`` is empty
for anything else."""


def event_frame(seq: int, eid: bytes, data: bytes) -> Frame:
    """The ``Frame`` of an event's ``data`` (its JSON as the event log stores it)."""
    found = _TEXT_DELTA.fullmatch(data)
    if found is None:
        return seq, eid, data, b"", b""
    return seq, eid, data, found[1], found[2]


_EVENTS = re.compile(rb"id: (([0-9]+)[^\n]*)\n(?:event: [^\n]*\n)?data: (%s|[^\n]*)\n\n" % _DELTA)


def aisdk_frames(chunk: bytes) -> list[Frame | bytes]:
    """The frames of an AI SDK SSE body chunk: a ``Frame`` for an event, the frame's bytes
    for anything else (a keepalive comment, ``retry:``); the closing ``[DONE]`` and
    id-less notices are left out. A chunk of events only (every run the fan-out
    delivers) is read by one pattern, text deltas recognised on the way, cheaper than
    reading its frames one by one: as many events found as frames, each within one frame
    and ending it, means every frame is an event."""
    if chunk.startswith(b"id: ") and chunk.endswith(b"\n\n"):
        found = _EVENTS.findall(chunk)
        if len(found) == chunk.count(b"\n\n"):
            return [(int(seq), eid, data, part, delta) for eid, seq, data, part, delta in found]
    out: list[Frame | bytes] = []
    for frame in chunk.split(b"\n\n"):
        if frame.startswith(b"id: "):
            line = frame.index(b"\n")
            eid = frame[4:line]
            data = frame[frame.index(b"\ndata: ", line - 1) + 7 :]
            out.append(event_frame(int(eid.split(b".", 1)[0]), eid, data))
        elif frame.startswith((b":", b"retry:")):
            out.append(frame + b"\n\n")
    return out


_ID = rb"id: [0-9]+(?:\.[^\n]*)?\n"
_TEXT_DELTA_HEAD = b'event: text-delta\ndata: {"type":"text-delta","id":"'
"""What follows a stored text delta's id line up to its part id."""
_HEAD = re.escape(_TEXT_DELTA_HEAD)
_STRING = rb'"(?:[^"\\]|\\.)[^"\\]*(?:\\.[^"\\]*)*"'
_DELTA_RUN = re.compile(
    rb'%s%s([A-Za-z0-9_.:-]{1,64})","delta":%s\}\n\n(?:%s%s\1","delta":%s\}\n\n)*'
    % (_ID, _HEAD, _STRING, _ID, _HEAD, _STRING)
)
"""Frames that are all non-empty text deltas of one part, as the event log stores them
(compact JSON, ``type``, ``id`` and ``delta`` only), and nothing else."""


def delta_run(chunk: bytes) -> tuple[int, int, bytes] | None:
    """``(first seq, last seq, part id)`` of a chunk of consecutive events that are all
    non-empty text deltas of one part (``_DELTA_RUN``: one match, cheaper than reading
    the frames one by one); None for any other chunk. A frame has four
    line ends (a JSON string holds none), so they count the events."""
    found = _DELTA_RUN.fullmatch(chunk)
    if found is None:
        return None
    last_at = chunk.rfind(b"\n\nid: ") + 2  # 1 (not found) for a run of one
    last_at = 0 if last_at == 1 else last_at
    first = int(chunk[4 : chunk.index(b"\n")].split(b".", 1)[0])
    last = int(chunk[last_at + 4 : chunk.index(b"\n", last_at)].split(b".", 1)[0])
    return (first, last, found[1]) if (last - first + 1) * 4 == chunk.count(b"\n") else None


def content_heads(part: bytes, message_id: str) -> tuple[bytes, bytes]:
    """What begins a text delta of ``part`` after its id line, and what begins its
    ``TEXT_MESSAGE_CONTENT`` frame: a ``delta_run`` of ``part`` with the one replaced by
    the other is its AG-UI frames (``content_frame``'s bytes, frame by frame)."""
    return (
        b'\n%s%s","delta":"' % (_TEXT_DELTA_HEAD, part),
        b'\ndata: {"type":"TEXT_MESSAGE_CONTENT","messageId":"%s","delta":"' % message_id.encode(),
    )


def parse_cursor(value: str | None) -> tuple[str | None, int | None] | None:
    """An AG-UI ``Last-Event-ID``: ``(the AI SDK resume point, n)``: ``n`` None when the
    client saw the whole chunk, else how many of its events it saw minus one. ``(None,
    None)`` when absent; None when malformed."""
    if value is None:
        return None, None
    base, sep, index = value.partition(":")
    if names.resume_point(base) is None:
        return None
    if not sep:
        return base, None
    if not index.isdigit() or len(index) > 4:
        return None
    return base, int(index)


def chunk_seq(point: str) -> int:
    """The seq of an AI SDK resume point ``<seq>[.<tag>]`` (checked by ``parse_cursor``)."""
    return int(point.split(".", 1)[0])
