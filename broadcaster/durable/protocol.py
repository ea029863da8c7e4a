"""The Durable Streams protocol's rules that need no I/O: offsets, cursors, headers, content
types, JSON batches, and how entries are encoded for each kind of read.

**Offsets** are ``<seq>_<history tag>``, both 16 decimal digits: the seq of the last entry
a reader has (the reference server's shape, ``%016d_%016d``, so the zero offset
``0000000000000000_0000000000000000`` clients and the conformance suite use means "the
start" here too), and the entry's 32-bit history tag in decimal. Fixed width makes them
sort as the protocol requires; the tag makes an offset name a history, not only a
position, as this project's SSE ids ``<seq>.<tag hex>`` do: the offset of event 7 is the
SSE id ``7.<tag>`` written another way (``offset_of_event_id``).
"""

from __future__ import annotations

import base64
import json
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from broadcaster.core import names
from broadcaster.core.keys import DATA, MORE

MAX_SAFE_INTEGER = 2**53 - 1
"""Producer epochs and seqs: the largest integer JavaScript clients can send exactly."""
MAX_TTL = 100 * 365 * 24 * 3600
"""Longest ``Stream-TTL`` accepted (seconds): a century, so that Redis's expiry, in ms,
cannot overflow."""

CURSOR_EPOCH = datetime(2024, 10, 9, tzinfo=UTC).timestamp()
"""Cursors count 20 s intervals from the protocol's epoch, so every server agrees."""
CURSOR_INTERVAL = 20

Mode = Literal["json", "text", "binary"]


class BadRequest(ValueError):
    """A request the protocol calls malformed (400); the message says what."""


# --- offsets ---


@dataclass(frozen=True, slots=True)
class Offset:
    seq: int
    tag: int
    """The history tag of the entry at ``seq`` as a number (0 at seq 0)."""

    def matches(self, tag: str) -> bool:
        """Whether ``tag`` (hex, as stored) is this offset's."""
        return self.tag == (int(tag, 16) if tag else 0)


RESERVED = "__ds"
"""The protocol reserves paths under ``__ds/`` for its subscription APIs, which this server
does not offer (docs/durable-streams.md says why): no stream is there."""


def is_reserved(path: str) -> bool:
    return path.split("/", 1)[0] == RESERVED


ReadOffset = Offset | Literal["-1", "now"]
"""Where a read starts: an ``Offset``, ``"-1"`` (the start) or ``"now"`` (the tail)."""


def format_offset(seq: int, tag: str) -> str:
    return f"{seq:016d}_{int(tag, 16) if tag else 0:016d}"


def offset_of_event_id(event_id: str) -> str:
    """The offset of an SSE event id ``<seq>.<tag>`` of this project."""
    seq, _, tag = event_id.partition(".")
    return format_offset(int(seq), tag)


def parse_offset(raw: str) -> Offset | Literal["-1", "now"]:
    """An offset a client sent; BadRequest unless it is ``-1``, ``now`` or digits_digits
    (``names.ds_offset``: ASCII digits only; spaces, commas, slashes, NUL and line breaks
    are all refused)."""
    parsed = names.ds_offset(raw)
    if parsed is None:
        raise BadRequest(f"malformed offset {raw[:80]!r}")
    if isinstance(parsed, tuple):
        return Offset(*parsed)
    return parsed


# --- cursors ---


def current_cursor(now: float | None = None) -> int:
    """The current 20 s interval since the protocol's epoch."""
    return int(((now if now is not None else time.time()) - CURSOR_EPOCH) // CURSOR_INTERVAL)


def response_cursor(client: str | None, now: float | None = None) -> str:
    """The cursor of a live response: the current 20 s interval, or, when the client's
    cursor is not behind it, the client's plus 1 to 3,600 s of jitter (so cursors only
    grow and a CDN never serves a cached empty answer in a loop)."""
    current = current_cursor(now)
    if not names.is_decimal(client) or len(client) > 18:
        return str(current)
    theirs = int(client)
    if theirs < current:
        return str(current)
    jitter = random.randint(1, 3600)
    return str(theirs + max(1, -(-jitter // CURSOR_INTERVAL)))


# --- headers ---


def is_true(value: str | None) -> bool:
    """``Stream-Closed``: only ``true`` counts (any case); other values are ignored."""
    return value is not None and value.strip().lower() == "true"


def parse_ttl(value: str) -> int:
    if not names.is_canonical_decimal(value) or int(value) > MAX_TTL:
        raise BadRequest(f"Stream-TTL must be a whole number of seconds, got {value[:40]!r}")
    return int(value)


def parse_expires_at(value: str) -> int:
    """RFC 3339 to Unix ms (a time without a zone is UTC)."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadRequest(f"Stream-Expires-At is not an RFC 3339 time: {value[:60]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def format_expires_at(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def parse_sub_offset(value: str) -> int:
    if not names.is_canonical_decimal(value) or int(value) > MAX_SAFE_INTEGER:
        raise BadRequest(f"Stream-Fork-Sub-Offset must be a whole number, got {value[:40]!r}")
    return int(value)


@dataclass(frozen=True, slots=True)
class Producer:
    id: str
    epoch: int
    seq: int


def parse_producer(pid: str | None, epoch: str | None, seq: str | None) -> Producer | None:
    """The idempotent producer's headers: all three or none."""
    given = [v is not None for v in (pid, epoch, seq)]
    if not any(given):
        return None
    if not all(given):
        raise BadRequest("Producer-Id, Producer-Epoch and Producer-Seq go together")
    assert pid is not None and epoch is not None and seq is not None
    if not pid:
        raise BadRequest("Producer-Id must not be empty")
    if not names.is_producer_id(pid):
        raise BadRequest(
            "Producer-Id must be at most 256 printable ASCII characters (space to ~), without ':'"
        )
    for name, value in (("Producer-Epoch", epoch), ("Producer-Seq", seq)):
        if not names.is_decimal(value) or int(value) > MAX_SAFE_INTEGER:
            raise BadRequest(f"{name} must be a non-negative integer below 2^53")
    return Producer(pid, int(epoch), int(seq))


@dataclass(frozen=True, slots=True)
class Creation:
    """What a ``PUT``'s headers ask for."""

    ttl: int | None
    expires_at: int | None
    closed: bool
    forked_from: str | None
    """``Stream-Forked-From``: the source of a fork (None: no fork)."""
    fork_offset: str | None
    """``Stream-Fork-Offset`` as sent (None: the source's tail), and as parsed:"""
    anchor: Offset | None
    sub: int
    """``Stream-Fork-Sub-Offset`` (0: none)."""


def parse_creation(headers: Mapping[str, str]) -> Creation:
    """A ``PUT``'s headers (lowercase names)."""
    h = headers
    ttl_raw, exp_raw = h.get("stream-ttl"), h.get("stream-expires-at")
    if ttl_raw is not None and exp_raw is not None:
        raise BadRequest("give Stream-TTL or Stream-Expires-At, not both")
    ttl = parse_ttl(ttl_raw) if ttl_raw is not None else None
    exp = parse_expires_at(exp_raw) if exp_raw is not None else None
    closed = is_true(h.get("stream-closed"))
    source = h.get("stream-forked-from")
    fork_offset = h.get("stream-fork-offset")
    sub_raw = h.get("stream-fork-sub-offset")
    if source is None and (fork_offset is not None or sub_raw is not None):
        raise BadRequest("Stream-Fork-Offset and -Sub-Offset need Stream-Forked-From")
    sub = parse_sub_offset(sub_raw) if sub_raw is not None else 0
    anchor = None
    if fork_offset is not None:
        parsed = parse_offset(fork_offset)
        if not isinstance(parsed, Offset):
            raise BadRequest("Stream-Fork-Offset must be an offset this server gave")
        anchor = parsed
    return Creation(ttl, exp, closed, source, fork_offset, anchor, sub)


def parse_read(offsets: list[str], live: str | None) -> ReadOffset:
    """A ``GET``'s ``offset`` (every one given) and ``live`` (``long-poll``, ``sse`` or
    none): where the read starts."""
    if len(offsets) > 1:
        raise BadRequest("one offset, please")
    if offsets and offsets[0] == "":
        raise BadRequest("an empty offset")
    offset = parse_offset(offsets[0]) if offsets else "-1"
    if live not in (None, "long-poll", "sse"):
        raise BadRequest("live is long-poll or sse")
    if live is not None and not offsets:
        raise BadRequest(f"live={live} needs an offset")
    return offset


def parse_append(headers: Mapping[str, str]) -> tuple[bool, Producer | None]:
    """A ``POST``'s headers (lowercase names): whether it closes the stream, and its
    idempotent producer."""
    h = headers
    close = is_true(h.get("stream-closed"))
    producer = parse_producer(h.get("producer-id"), h.get("producer-epoch"), h.get("producer-seq"))
    return close, producer


# --- content types ---


def normalize_content_type(value: str | None) -> str:
    """The media type alone, lower case: ``Text/Plain; charset=utf-8`` is ``text/plain``."""
    return (value or "").split(";", 1)[0].strip().lower()


def valid_content_type(value: str) -> bool:
    return names.is_media_type(value)


INERT_CONTENT_TYPES = frozenset({"application/json", "text/plain", "application/octet-stream"})
"""The types a browser never runs as a page: JSON and plain text are shown as text (with
``nosniff``, which every response carries), octet-stream is saved."""
SANDBOX = "sandbox; default-src 'none'"
"""A Durable Stream of any other type is served with this CSP: a browser that opens it
(``text/html``, ``image/svg+xml``, XML…) renders it in a unique opaque origin with no
script, no forms, no plugins and nothing loaded, so it cannot reach the API's origin
(where the demo page keeps its keys)."""


def stored_bytes_headers(content_type: str) -> dict[str, str]:
    """What a response carrying a stream's bytes with the stream's own ``content_type``
    adds: nothing for the inert types; for any other, ``Content-Security-Policy:
    sandbox`` and ``Content-Disposition: attachment`` (a browser that navigates there
    saves the bytes instead of showing them; ``fetch``, ``EventSource`` and ``<img>``
    ignore it). Any type, not a list of dangerous ones: the API is no file host, and the
    list of what a browser renders as a document (HTML, XHTML, SVG, XML with XSLT, PDF,
    MHTML…) is longer than anyone remembers."""
    if content_type in INERT_CONTENT_TYPES:
        return {}
    return {"content-security-policy": SANDBOX, "content-disposition": "attachment"}


NEXT = "Stream-Next-Offset"
UP_TO_DATE = "Stream-Up-To-Date"
CLOSED = "Stream-Closed"
CURSOR = "Stream-Cursor"


def typed_headers(content_type: str) -> dict[str, str]:
    """The headers of a response in the stream's own type: the type, and for any type a
    browser might render as a page, the sandbox and attachment that stop it
    (``stored_bytes_headers``)."""
    return {"content-type": content_type, **stored_bytes_headers(content_type)}


def sse_headers(mode: Mode) -> dict[str, str]:
    """The headers of a ``live=sse`` read of a stream whose messages are ``mode``."""
    headers = {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
    }
    if mode == "binary":
        headers["stream-sse-data-encoding"] = "base64"
    return headers


def offset_headers(
    next_offset: str,
    content_type: str | None = None,
    *,
    up_to_date: bool = False,
    cache: str | None = None,
    closed: bool = False,
) -> dict[str, str]:
    """The headers that say where a stream is: its type (``typed_headers``, if given),
    the next offset, whether the reader is up to date, ``cache-control`` (if given), and
    whether the stream is closed."""
    headers = typed_headers(content_type) if content_type is not None else {}
    headers[NEXT] = next_offset
    if up_to_date:
        headers[UP_TO_DATE] = "true"
    if cache is not None:
        headers["cache-control"] = cache
    if closed:
        headers[CLOSED] = "true"
    return headers


def mode_of(content_type: str) -> Mode:
    if content_type == "application/json":
        return "json"
    if content_type.startswith("text/"):
        return "text"
    return "binary"


# --- JSON batches ---


def json_messages(body: bytes, *, allow_empty: bool) -> list[bytes]:
    """A JSON body as the messages it appends: an array is flattened one level (``[]`` is
    refused unless ``allow_empty``, as a PUT's initial body may be); each message is
    stored compact, so that it fits one SSE ``data:`` line. UTF-8 only (Python's parser
    alone would also take UTF-16 and UTF-32)."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    items = value if isinstance(value, list) else [value]
    if not items and not allow_empty:
        raise BadRequest("an empty JSON array appends nothing")
    return [_compact(item) for item in items]


def body_entries(content_type: str, body: bytes, *, create: bool) -> list[tuple[str, bytes]]:
    """The entries a body appends: one per JSON message (flattened one level) for
    ``application/json``, else the bytes as one. ``create``: a PUT's initial body, which
    may be ``[]``."""
    if not body:
        return []
    if mode_of(content_type) == "json":
        messages = json_messages(body, allow_empty=create)
        return [(MORE, m) for m in messages[:-1]] + [(DATA, m) for m in messages[-1:]]
    return [(DATA, body)]


def _compact(value: Any) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate: escaped instead
        return json.dumps(value, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None


# --- encodings ---


def body_of(mode: Mode, payloads: list[bytes]) -> bytes:
    """A catch-up or long-poll body: a JSON array of the messages, or the bytes."""
    if mode == "json":
        return b"[" + b",".join(payloads) + b"]"
    return b"".join(payloads)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def sse_data(mode: Mode, payloads: list[bytes]) -> bytes:
    """One SSE ``data`` event carrying ``payloads``: a JSON array on one line, text split
    into ``data:`` lines at every line break (so a payload can never end the event or
    start another), or the bytes in base64."""
    if mode == "json":
        return b"event: data\ndata:[" + b",".join(payloads) + b"]\n\n"
    if mode == "text":
        text = b"".join(payloads).decode("utf-8", "replace")
        lines = "\n".join("data:" + line for line in _LINE_BREAK.split(text))
        return b"event: data\n" + lines.encode() + b"\n\n"
    return b"event: data\ndata:" + base64.b64encode(b"".join(payloads)) + b"\n\n"


def sse_control(next_offset: str, cursor: str | None, *, up_to_date: bool, closed: bool) -> bytes:
    control: dict[str, Any] = {"streamNextOffset": next_offset}
    if closed:
        control["streamClosed"] = True
        control["upToDate"] = True
    else:
        if cursor is not None:
            control["streamCursor"] = cursor
        if up_to_date:
            control["upToDate"] = True
    return b"event: control\ndata:" + json.dumps(control, separators=(",", ":")).encode() + b"\n\n"


def etag(name: str, start: str, end: str, closed: bool) -> str:
    """Changes with the range read and with closure (``:c``), as the protocol asks."""
    named = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
    return f'"{named}:{start}:{end}{":c" if closed else ""}"'
