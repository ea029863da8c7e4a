r"""Every name the project accepts from outside, each defined once: its grammar, the one
function that checks it, and, for the grammars a schema publishes, its pattern.

Names end up in Redis keys, SSE ``event:``/``id:`` lines and HTTP headers, where a line
break would split a frame. So every check is whole-string (``\A...\Z`` with
``fullmatch``: Python's ``$`` also matches before a final newline), ASCII (``[0-9]``,
never ``\d`` or ``\w``, which take any Unicode digit or letter) and free of control
characters. The ``*_PATTERN`` strings are the same grammars for JSON Schema and
pydantic (``^...$``, whose ``$`` ends the string there); Python code never matches with
them (tests/unit/test_names.py checks every model field). Pure: no I/O.
"""

from __future__ import annotations

import re
import secrets
from typing import Literal, TypeGuard
from urllib.parse import urlsplit


def _whole(grammar: str) -> re.Pattern[str]:
    """A grammar compiled to match whole strings only, in ASCII, whichever of ``match``,
    ``fullmatch`` or ``search`` is used."""
    return re.compile(rf"\A(?:{grammar})\Z", re.ASCII)


def _published(grammar: str) -> str:
    """A grammar as JSON Schema and pydantic's Rust engine anchor it."""
    return f"^{grammar}$"


# --- stream ids, chat ids, prefixes ---

STREAM_ID_GRAMMAR = r"[A-Za-z0-9_-]{1,64}"
"""The contract's stream id. Nothing else is ever put into a stream's Redis keys: no
``{``, ``}`` or ``:`` (a hash tag of its own, another part of a key), no ``~`` (the
Durable Streams names of other paths, the separator of run ids)."""
STREAM_ID_RE = _whole(STREAM_ID_GRAMMAR)
STREAM_ID_PATTERN = _published(STREAM_ID_GRAMMAR)


def is_stream_id(value: object) -> TypeGuard[str]:
    """A stream id: 1 to 64 of ``A-Z a-z 0-9 _ -``."""
    return isinstance(value, str) and STREAM_ID_RE.fullmatch(value) is not None


def is_chat_id(value: object) -> TypeGuard[str]:
    """A chat id: a stream id's grammar (a chat's keys carry it as a stream's do)."""
    return is_stream_id(value)


def is_prefix(value: object) -> TypeGuard[str]:
    """A prefix of ``GET /v1/events?prefix=``: a stream id's grammar (what it starts is
    a stream id)."""
    return is_stream_id(value)


RESERVED_HEX = 16
"""The stream ids the server makes for its own streams, which no producer may create,
begin ``c``, this many lowercase hex digits, ``_``: a chat's answers (the digits are of
the chat id's hash), which ``GET /v1/events?chat=`` follows as a prefix."""
_HEX = frozenset("0123456789abcdef")


def is_reserved(name: str) -> bool:
    """Whether a stream id (or a Durable Streams path) begins as the server's own streams
    do (``RESERVED_HEX``)."""
    head = name[: RESERVED_HEX + 2]
    return (
        len(head) == RESERVED_HEX + 2
        and head[0] == "c"
        and head[-1] == "_"
        and _HEX.issuperset(head[1:-1])
    )


def new_id() -> str:
    """An id the server makes (a stream's, a chat's): 128 random bits, URL-safe, 22
    characters of ``[A-Za-z0-9_-]``; never one kept for its own streams (``is_reserved``)."""
    while is_reserved(made := secrets.token_urlsafe(16)):
        pass
    return made


RUN_SEPARATOR = "~"
"""Between the parts of a run id: not in the id alphabet, and left as is by
``encodeURIComponent``."""
_RUN_ID_RE = _whole(rf"({STREAM_ID_GRAMMAR})~({STREAM_ID_GRAMMAR})~([0-9]{{1,12}})")


CHAT_STREAM_GRAMMAR = rf"{STREAM_ID_GRAMMAR}(~{STREAM_ID_GRAMMAR}~[0-9]{{1,12}})?"
"""What ``GET /v1/chat/{id}/stream`` takes: a chat id, or a run id."""
CHAT_STREAM_PATTERN = _published(CHAT_STREAM_GRAMMAR)


def parse_run_id(value: object) -> tuple[str, str, int] | None:
    """A chat answer's run id ``<chat id>~<generation id>~<base>`` (base: 1 to 12 decimal
    digits) as ``(chat, generation, base)``; None if ``value`` is not one."""
    m = _RUN_ID_RE.fullmatch(value) if isinstance(value, str) else None
    return (m[1], m[2], int(m[3])) if m else None


_CHAT_RESUME_RE = _whole(r"([0-9]{1,9}):([0-9]{1,12})(?:\.[0-9a-f]{8})?")


def chat_resume_point(value: str) -> tuple[int, int] | None:
    """A resume point of a chat's stream (``GET /v1/chat/{id}/events``),
    ``<turn>:<seq>[.<tag>]``, as ``(turn, seq)``; None if ``value`` is not one."""
    m = _CHAT_RESUME_RE.fullmatch(value)
    return (int(m[1]), int(m[2])) if m else None


# --- events ---

EVENT_TYPE_GRAMMAR = r"[a-z0-9][a-z0-9-]{0,63}"
"""An event's ``type``: it is the SSE ``event:`` line (and the append script checks it
again, ``scripts/append.lua``)."""
EVENT_TYPE_RE = _whole(EVENT_TYPE_GRAMMAR)
EVENT_TYPE_PATTERN = _published(EVENT_TYPE_GRAMMAR)


def is_event_type(value: object) -> TypeGuard[str]:
    """An event type: a lower-case letter or digit, then up to 63 of those or ``-``."""
    return isinstance(value, str) and EVENT_TYPE_RE.fullmatch(value) is not None


AGUI_EVENT_TYPE_GRAMMAR = r"[A-Z][A-Z0-9_]{0,63}"
"""An AG-UI event's ``type`` (``TEXT_MESSAGE_CONTENT``), as published to a stream."""
AGUI_EVENT_TYPE_RE = _whole(AGUI_EVENT_TYPE_GRAMMAR)
AGUI_EVENT_TYPE_PATTERN = _published(AGUI_EVENT_TYPE_GRAMMAR)


def is_agui_event_type(value: object) -> TypeGuard[str]:
    """An AG-UI event type: an upper-case letter, then up to 63 of those, digits or ``_``."""
    return isinstance(value, str) and AGUI_EVENT_TYPE_RE.fullmatch(value) is not None


WEBHOOK_EVENT_TYPE_GRAMMAR = r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+"
WEBHOOK_EVENT_TYPE_RE = _whole(WEBHOOK_EVENT_TYPE_GRAMMAR)


def is_webhook_event_type(value: object) -> TypeGuard[str]:
    """A webhook event's type: dotted lower-case words (``stream.occupied``)."""
    return isinstance(value, str) and WEBHOOK_EVENT_TYPE_RE.fullmatch(value) is not None


# --- resume points ---

_RESUME_POINT_RE = _whole(r"(0|[1-9][0-9]{0,17})(?:\.([A-Za-z0-9_-]{0,64}))?")
RESUME_POINT_GRAMMAR = r"( *(0|[1-9][0-9]{0,17})(\.[A-Za-z0-9_-]{0,64})? *)?"
"""A resume point as sent (``resume_point``): empty, or a seq and a suffix, with spaces
around it."""
RESUME_POINT_PATTERN = _published(RESUME_POINT_GRAMMAR)
_HISTORY_TAG_RE = _whole(r"[0-9a-f]{8}")
_SPACE = " "
"""Spaces around a resume point are let through (HTTP strips them from a header, not from
``?last_event_id=``); no other whitespace, which is control characters."""


def resume_point(value: str | None) -> tuple[int, str | None] | None:
    """A stream's resume point (``Last-Event-ID``): the decimal seq (0 to 18 digits, no
    leading zero), optionally a ``.`` and a suffix of up to 64 of ``A-Z a-z 0-9 _ -``,
    which a later version may add (ids are opaque and begin with the decimal seq).
    ``(seq, history tag)`` for a suffix that is a tag (8 hex digits), ``(seq, None)`` for
    none or another suffix, ``(0, None)`` when absent; None when malformed."""
    if value is None or value == "":
        return 0, None
    m = _RESUME_POINT_RE.fullmatch(value.strip(_SPACE))
    if m is None:
        return None
    tag = m[2] if m[2] is not None and _HISTORY_TAG_RE.fullmatch(m[2]) else None
    return int(m[1]), tag


MUX_RESUME_POINT_MAX = 65536
"""Longest resume point of ``GET /v1/events`` (characters)."""
_MUX_TOKEN_RE = _whole(r"-|[0-9a-f]{16}")
_MUX_DELTA_RE = _whole(
    rf"(?:([0-9]{{1,6}})|~({STREAM_ID_GRAMMAR}))=([0-9]{{1,18}})(?:\.([0-9a-f]{{8}}))?"
)


_POSITION = r"=[0-9]{1,18}(\.[0-9a-f]{8})?"
_NAMED = rf"~{STREAM_ID_GRAMMAR}"
_REF = rf"([0-9]{{1,6}}|{_NAMED})"
MUX_RESUME_POINT_GRAMMAR = (
    rf"( *(-(\.{_NAMED}{_POSITION}(,{_NAMED}{_POSITION})*)?"
    rf"|[0-9a-f]{{16}}(\.{_REF}{_POSITION}(,{_REF}{_POSITION})*)?) *)?"
)
"""``GET /v1/events``' resume point as sent (``mux_resume_point``, ``mux_delta``): empty,
or a base (``-``: none) and the positions moved since, each stream by its index in the
base or as ``~<id>``."""
MUX_RESUME_POINT_PATTERN = _published(MUX_RESUME_POINT_GRAMMAR)


def mux_resume_point(value: str) -> tuple[str, str] | None:
    """``GET /v1/events``'s resume point ``<base token>.<deltas>`` split into its token
    (``-`` or 16 hex digits) and its comma-separated deltas (``mux_delta``); None unless
    the token is one and the whole is at most ``MUX_RESUME_POINT_MAX`` characters."""
    token, _, rest = value.strip(_SPACE).partition(".")
    if len(value) > MUX_RESUME_POINT_MAX or not _MUX_TOKEN_RE.fullmatch(token):
        return None
    return token, rest


def mux_delta(value: str) -> tuple[int | str, int, str] | None:
    """One position of ``GET /v1/events``'s resume point, ``<ref>=<seq>[.<tag>]``: the
    stream as its index in the base (up to 6 digits) or ``~<stream id>``, its seq (up to
    18 digits) and history tag (8 hex digits, or empty); None when malformed."""
    m = _MUX_DELTA_RE.fullmatch(value)
    if m is None:
        return None
    ref: int | str = int(m[1]) if m[1] is not None else m[2]
    return ref, int(m[3]), m[4] or ""


# --- Durable Streams ---

DS_PATH_MAX = 1024
"""Longest Durable Streams path (bytes of UTF-8) a stream may have."""
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""A control character anywhere: C0, DEL or C1 (searched for, not a grammar)."""


def has_control(value: str) -> bool:
    """Whether ``value`` holds a control character (C0, DEL or C1) anywhere."""
    return _CONTROL_RE.search(value) is not None


def is_ds_path(value: object) -> TypeGuard[str]:
    """A Durable Streams path: 1 to ``DS_PATH_MAX`` bytes of UTF-8, any characters but
    control characters (C0, DEL, C1); a lone surrogate (text that is no UTF-8) is not
    one. Wider than a stream id (``/``, ``.``, any letter); a path that is a stream id is
    that stream. A path that reached the server as invalid UTF-8 is the caller's to
    refuse: decoding replaced its bytes."""
    if not isinstance(value, str) or not value or has_control(value):
        return False
    try:
        return len(value.encode("utf-8")) <= DS_PATH_MAX
    except UnicodeEncodeError:
        return False


_DS_OFFSET_RE = _whole(r"([0-9]{1,20})_([0-9]{1,20})")
DS_OFFSET_GRAMMAR = r"[0-9]{1,20}_[0-9]{1,20}"
"""An offset this server gave (``<seq>_<tag>``)."""
DS_OFFSET_PATTERN = _published(DS_OFFSET_GRAMMAR)
DS_READ_OFFSET_GRAMMAR = rf"(-1|now|{DS_OFFSET_GRAMMAR})"
"""What a read may start from (``ds_offset``)."""
DS_READ_OFFSET_PATTERN = _published(DS_READ_OFFSET_GRAMMAR)

CHATS_CURSOR_GRAMMAR = rf"[0-9]{{1,15}}\.{STREAM_ID_GRAMMAR}"
"""A page's cursor of ``GET /v1/chats``, as ``older`` gives it: when its last chat
changed (ms), and its id."""
CHATS_CURSOR_PATTERN = _published(CHATS_CURSOR_GRAMMAR)

DAY_GRAMMAR = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
"""A UTC day, ``YYYY-MM-DD`` (``GET /v1/usage``'s ``from`` and ``to``)."""
DAY_PATTERN = _published(DAY_GRAMMAR)


def ds_offset(value: str) -> tuple[int, int] | Literal["-1", "now"] | None:
    """A Durable Streams offset a client sent: ``-1``, ``now``, or ``<seq>_<tag>`` (1 to
    20 decimal digits each) as ``(seq, tag)``; None when malformed."""
    if value == "-1":
        return "-1"
    if value == "now":
        return "now"
    m = _DS_OFFSET_RE.fullmatch(value)
    return (int(m[1]), int(m[2])) if m else None


_DECIMAL_RE = _whole(r"[0-9]+")
_CANONICAL_DECIMAL_RE = _whole(r"0|[1-9][0-9]*")


def is_decimal(value: object) -> TypeGuard[str]:
    """Decimal digits, leading zeros allowed (``Producer-Epoch``, ``Producer-Seq``, a
    long-poll's ``cursor``)."""
    return isinstance(value, str) and _DECIMAL_RE.fullmatch(value) is not None


def is_canonical_decimal(value: object) -> TypeGuard[str]:
    """Decimal digits without a leading zero (``Stream-TTL``,
    ``Stream-Fork-Sub-Offset``)."""
    return isinstance(value, str) and _CANONICAL_DECIMAL_RE.fullmatch(value) is not None


PRODUCER_ID_MAX = 256
PRODUCER_ID_GRAMMAR = rf"[ -9;-~]{{1,{PRODUCER_ID_MAX}}}"
PRODUCER_ID_PATTERN = _published(PRODUCER_ID_GRAMMAR)
_PRODUCER_ID_RE = _whole(PRODUCER_ID_GRAMMAR)


def is_producer_id(value: object) -> TypeGuard[str]:
    """A Durable Streams ``Producer-Id``: 1 to 256 printable ASCII characters (space to
    ``~``), without ``:`` (the separator of a producer's stored state)."""
    return isinstance(value, str) and _PRODUCER_ID_RE.fullmatch(value) is not None


_ENTRY_ID_RE = _whole(r"[0-9]+(?:-[0-9]+)?")


def is_entry_id(value: object) -> TypeGuard[str]:
    """A Redis stream entry id as an operator types it (``1795371633000-0``, or the
    milliseconds alone): the dead-letter list's ids."""
    return isinstance(value, str) and _ENTRY_ID_RE.fullmatch(value) is not None


_MEDIA_TYPE_RE = _whole(r"[A-Za-z0-9_.+-]+/[A-Za-z0-9_.+-]+")


def is_media_type(value: object) -> TypeGuard[str]:
    """A media type without parameters (``text/plain``): a type and a subtype of
    ``A-Z a-z 0-9 _ . + -``. A Durable Stream's is sent back as its ``Content-Type``."""
    return isinstance(value, str) and _MEDIA_TYPE_RE.fullmatch(value) is not None


# --- providers ---

PROVIDER_NAME_GRAMMAR = EVENT_TYPE_GRAMMAR
"""A provider's name: a built-in one (``anthropic``), or an agent a worker serves under
it (``WORKER_AGENTS``). Lower case, digits and dashes, as AG-UI's agent ids, which name
providers, are."""
PROVIDER_NAME_RE = _whole(PROVIDER_NAME_GRAMMAR)
PROVIDER_NAME_PATTERN = _published(PROVIDER_NAME_GRAMMAR)


def is_provider_name(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and PROVIDER_NAME_RE.fullmatch(value) is not None


LEASE_GRAMMAR = rf"{PROVIDER_NAME_GRAMMAR}\.[0-9]{{1,20}}-[0-9]{{1,20}}\.[A-Za-z0-9_-]{{16,64}}"
"""A lease token of the worker protocol (``generations/leases.py``): the provider, the job's
queue entry id and a random part, joined by ``.``. It is stored as the generation's
``owner``, never in a key."""
LEASE_RE = _whole(LEASE_GRAMMAR)
LEASE_PATTERN = _published(LEASE_GRAMMAR)


def is_lease_token(value: object) -> TypeGuard[str]:
    """A lease token's shape (whether it owns anything is the generation's to say)."""
    return isinstance(value, str) and LEASE_RE.fullmatch(value) is not None


# --- tools and content blocks of a generation request ---

TOOL_NAME_GRAMMAR = r"[a-zA-Z0-9_-]{1,128}"
"""Anthropic's rule for a custom tool's name: a request's tools and the worker's own."""
TOOL_NAME_RE = _whole(TOOL_NAME_GRAMMAR)
TOOL_NAME_PATTERN = _published(TOOL_NAME_GRAMMAR)


def is_tool_name(value: object) -> TypeGuard[str]:
    """A tool's name: 1 to 128 of ``A-Z a-z 0-9 _ -``."""
    return isinstance(value, str) and TOOL_NAME_RE.fullmatch(value) is not None


TOOL_USE_ID_GRAMMAR = r"[a-zA-Z0-9_-]{1,256}"
"""A ``tool_use`` block's id, as Anthropic accepts it."""
TOOL_USE_ID_PATTERN = _published(TOOL_USE_ID_GRAMMAR)

BLOCK_TYPE_GRAMMAR = r"[a-z][a-z0-9_]{0,63}"
"""The ``type`` of a content block this project passes on without checking its fields."""
BLOCK_TYPE_PATTERN = _published(BLOCK_TYPE_GRAMMAR)

SERVER_TOOL_TYPE_GRAMMAR = r"[a-z][a-z0-9_]{0,54}_[0-9]{8}"
_SERVER_TOOL_TYPE_RE = _whole(SERVER_TOOL_TYPE_GRAMMAR)
SERVER_TOOL_TYPE_PATTERN = _published(SERVER_TOOL_TYPE_GRAMMAR)


def is_server_tool_type(value: object) -> TypeGuard[str]:
    """The type of one of Anthropic's own tools: a name and its version's date
    (``web_search_20250305``)."""
    return isinstance(value, str) and _SERVER_TOOL_TYPE_RE.fullmatch(value) is not None


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, lower-case and without a default
    port, so an allow-list entry and a URL compare equal however they are written; None
    if ``url`` is not an absolute http(s) URL (or carries credentials, which a webhook
    URL has no use for)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + (f":{port}" if port not in (None, default) else "")
