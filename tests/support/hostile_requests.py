"""What the hostile-input machine sends (``tests/integration/test_hostile_input.py``): names with
control characters, odd characters and invalid UTF-8, bodies in odd encodings and over
their limits, malformed sequence numbers, resumes and Durable Streams headers; and the
budget of examples and steps."""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from broadcaster.core import keys
from tests.support import long_form

ADMIN = "admin-" + secrets.token_hex(8)
SECRET = secrets.token_hex(16)

MAX_EXAMPLES = long_form.budget(15, 200)
STEPS = 100
"""Examples of the machine, and steps in each (at most; hypothesis ends some sooner):
about 40,000 hostile requests at the full budget (``make test-long``); a fifteenth of
that in ``make test``, where each rule is still drawn dozens of times (docs/testing.md
has the figures)."""

READERS_SECONDS = 30.0
"""How long the readers may take to reach the end of the healthy streams once they end."""

MAX_BODY = 65536
MAX_EVENT = 4096

ID_ALPHABET = string.ascii_letters + string.digits + "_-"
C0 = [chr(c) for c in range(0x20)]
C1 = [chr(c) for c in range(0x80, 0xA0)]
CONTROL = [*C0, "\x7f", *C1]
"""Every C0 control character, DEL, and every C1 control character."""
ODD_CHARACTERS = [
    "\u0661",  # ARABIC-INDIC DIGIT ONE
    "\u0660",
    "\uff10",  # FULLWIDTH DIGIT ZERO
    "\uff41",  # FULLWIDTH LATIN SMALL LETTER A
    "\u00e9",
    "\u00df",
    "\u212a",  # KELVIN SIGN, which lower-cases to k
    "\u0130",  # LATIN CAPITAL LETTER I WITH DOT ABOVE
    "\u200b",  # ZERO WIDTH SPACE
    "\ufeff",  # BYTE ORDER MARK
    "\u2028",  # LINE SEPARATOR
    " ",
    ".",
    "*",
    "~",
    "{",
    "}",
    ":",
    "%",
    "+",
]
INVALID_UTF8 = [b"%FF", b"%C0%AF", b"%ED%A0%80", b"%E0%80%AE", b"%80", b"%F8%88%80%80%80"]
"""Percent-encoded bytes that are not UTF-8 (an overlong ``/`` and ``.``, a surrogate)."""


# --- what a hostile request is made of ---

valid_id = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=16)


def _joined(parts: tuple[str, ...]) -> str:
    return "".join(parts)


bad_names = st.one_of(
    st.tuples(valid_id, st.just("\n")).map(_joined),  # the classic: a trailing newline
    st.tuples(valid_id, st.sampled_from(["\r", "\r\n", "\x00", "\n\n"])).map(_joined),
    st.tuples(valid_id, st.sampled_from(CONTROL)).map(_joined),
    st.tuples(st.sampled_from(CONTROL), valid_id).map(_joined),
    st.tuples(valid_id, st.sampled_from(CONTROL), valid_id).map(_joined),
    st.tuples(valid_id, st.sampled_from(ODD_CHARACTERS)).map(_joined),
    st.sampled_from(
        ["\u0661", "\u0661\u0662\u0663", "\u0660", "\uff10\uff11\uff12", "\uff41\uff42\uff43"]
    ),
    st.integers(min_value=65, max_value=300).map(lambda n: "a" * n),
    st.just("b" * 5000),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=24).filter(
        lambda s: keys.STREAM_ID_RE.fullmatch(s) is None
    ),
)
"""Names that are not stream ids (``^[A-Za-z0-9_-]{1,64}$``): controls, odd characters,
overlong, and any text that is not an id."""


def encode_segment(name: str) -> bytes:
    """A name as one path segment or query value: percent-encoded, dots too (a client
    would make ``..`` a step up)."""
    return quote(name, safe="").replace(".", "%2E").encode()


@dataclass(frozen=True)
class Name:
    """A hostile name: how it is sent (``raw``, percent-encoded bytes) and what it is."""

    raw: bytes
    shown: str


names = st.one_of(
    bad_names.map(lambda n: Name(encode_segment(n), repr(n))),
    st.tuples(valid_id, st.sampled_from(INVALID_UTF8)).map(
        lambda t: Name(t[0].encode() + t[1], f"{t[0]!r} + {t[1].decode()}")
    ),
)


BAD_TYPES: list[Any] = [
    *[f"data-x{c}" for c in CONTROL],
    *[f"{c}data-x" for c in ("\n", "\r", "\x00", "\x85")],
    "finish\n",
    "error\n",
    "abort\r",
    "data-x\r\n",
    "data-x\n\n",
    "data-\u0661",
    "data-x\u2028",
    "DATA-X",
    "data_x",
    "-x",
    "",
    "a" * 65,
    "\uff44ata",
    ["data-x"],
    1,
    None,
    True,
    {"type": "data-x"},
]
"""Event types that do not match ``^[a-z0-9][a-z0-9-]{0,63}$``, and types that are not
strings."""

GOOD = {"type": "data-ok", "n": 0}


def _utf16(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode("utf-16")


BAD_EVENT_BODIES: list[tuple[str, bytes]] = [
    ("empty batch", b"[]"),
    ("terminal first in a batch", json.dumps([{"type": "finish"}, GOOD]).encode()),
    ("a string in a batch", json.dumps([GOOD, "data-x"]).encode()),
    ("a list in a batch", json.dumps([GOOD, ["data-x"]]).encode()),
    ("null in a batch", json.dumps([GOOD, None]).encode()),
    ("a number", b"1"),
    ("a string", b'"data-x"'),
    ("null", b"null"),
    ("invalid UTF-8", b'{"type":"data-x","a":"\xff\xfe"}'),
    ("invalid UTF-8 in the type", b'{"type":"data-x\xc0\xaf"}'),
    ("a lone surrogate", b'{"type":"data-x","a":"\\ud800"}'),
    ("NaN", b'{"type":"data-x","a":NaN}'),
    ("Infinity", b'{"type":"data-x","a":-Infinity}'),
    ("truncated", b'{"type":"data-x","a":'),
    ("trailing garbage", b'{"type":"data-x"}x'),
    ("NUL", b'\x00{"type":"data-x"}'),
    (
        "an event over the event limit",
        json.dumps({"type": "data-x", "b": "y" * MAX_EVENT}).encode(),
    ),
    ("a body over the body limit", json.dumps([{"type": "data-x", "b": "y" * 1000}] * 70).encode()),
    ("nested too deep", b'{"type":"data-x","a":' + b"[" * 200 + b"]" * 200 + b"}"),
]
"""Bodies ``POST /v1/streams/{id}/events`` must refuse whole (a batch is all or none)."""

ODD_ENCODINGS: list[tuple[str, bytes]] = [
    ("UTF-16", _utf16({"type": "data-odd"})),
    ("UTF-16 without a BOM", json.dumps({"type": "data-odd"}).encode("utf-16-le")),
    ("UTF-16BE without a BOM", json.dumps({"type": "data-odd"}).encode("utf-16-be")),
    ("UTF-32", json.dumps({"type": "data-odd"}).encode("utf-32")),
]
"""A valid event in a body that is not UTF-8 (the contract: 422 ``invalid_json``), sent to
the victim stream only: what it would add is a valid event."""

BAD_EXPECTED_SEQ = ["%D9%A1", "%EF%BC%90", "0x1", "1e3", "%5B1%5D", "true", "-", "", "1.5", "%00"]
"""``expected_last_event_id`` values that are not integers (an Arabic-Indic 1, a fullwidth
0, ...)."""
LAX_EXPECTED_SEQ = ["0.0", "0_0", "%200", "0%0A", "%2B0"]
"""Values that are integers only as pydantic's lax mode reads them (``0.0``, ``0_0``,
``" 0"``, ``"0\\n"``, ``+0``): accepted today; the contract says "integer"."""

BAD_TOKEN_BODIES: list[tuple[str, bytes]] = [
    ("ttl a list", b'{"ttl_seconds": [60]}'),
    ("ttl a string", b'{"ttl_seconds": "60"}'),
    ("ttl in Arabic-Indic digits", '{"ttl_seconds": "\u0666\u0660"}'.encode()),
    ("ttl true", b'{"ttl_seconds": true}'),
    ("ttl a float", b'{"ttl_seconds": 60.5}'),
    ("ttl 0", b'{"ttl_seconds": 0}'),
    ("ttl over the max", b'{"ttl_seconds": 999999999999}'),
    ("sub a list", b'{"sub": ["user"]}'),
    ("sub a number", b'{"sub": 5}'),
    ("sub empty", b'{"sub": ""}'),
    ("sub overlong", json.dumps({"sub": "u" * 257}).encode()),
    ("a list", b"[60]"),
    ("not JSON", b"{"),
    ("invalid UTF-8", b'{"sub": "\xff"}'),
    ("over 4096 bytes", json.dumps({"sub": "u", "pad": "p" * 5000}).encode()),
]

BAD_OFFSETS: list[bytes] = [
    b"0000000000000000_0000000000000000%0A",
    b"0000000000000000_0000000000000000%0D",
    b"0000000000000000_0000000000000000%00",
    b"-1%0A",
    b"now%0A",
    b"%0A-1",
    b"1_1%20",
    b"1,1",
    b"1/1",
    b"1__1",
    b"_",
    b"1_",
    b"1" * 21 + b"_1",
    b"%FF_%FF",
    quote("\u0660" * 16 + "_" + "\u0660" * 16).encode(),  # ARABIC-INDIC DIGIT ZERO
    quote("\u0661_\u0661").encode(),
    quote("\uff10" * 16 + "_" + "\uff10" * 16).encode(),  # FULLWIDTH DIGIT ZERO
]
"""Offsets a Durable Streams read must answer with 400 (docs/durable-streams.md: "A
malformed offset (spaces, commas, slashes, NUL, line breaks...) is 400")."""

BAD_DASHBOARD_RESUME = [
    "-.0=%D9%A1",
    "-.%D9%A1=1",
    "-.~x%0A=1",
    "-.0=1%0A",
    "-.0=1.%0A",
    "%0A",
    "-.0=1,0=1,,",
]
"""Resume points of ``/v1/events`` that are not ids it issued."""

_INT = b"0"
ARABIC_1 = "\u0661".encode()
ARABIC_OFFSET = "\u0661_\u0661".encode()
BAD_PRODUCER_HEADERS: list[tuple[str, list[tuple[bytes, bytes]]]] = [
    ("Producer-Seq in Arabic-Indic digits", [(b"producer-seq", "\u0661".encode())]),
    ("Producer-Seq fullwidth", [(b"producer-seq", "\uff10".encode())]),
    ("Producer-Seq negative", [(b"producer-seq", b"-1")]),
    ("Producer-Seq 2^53", [(b"producer-seq", str(2**53).encode())]),
    ("Producer-Seq hex", [(b"producer-seq", b"0x1")]),
    ("Producer-Seq a list", [(b"producer-seq", b"[0]")]),
    ("Producer-Epoch in Arabic-Indic digits", [(b"producer-epoch", "\u0660".encode())]),
    ("Producer-Epoch overlong", [(b"producer-epoch", b"9" * 40)]),
    ("Producer-Epoch a float", [(b"producer-epoch", b"0.0")]),
    ("Producer-Id empty", [(b"producer-id", b"")]),
    ("Producer-Id with ':'", [(b"producer-id", b"a:b")]),
    ("Producer-Id overlong", [(b"producer-id", b"p" * 257)]),
    ("Producer-Id with a C0 control", [(b"producer-id", b"p\x01")]),
    ("Producer-Id with DEL", [(b"producer-id", b"p\x7f")]),
]
"""One header of an otherwise valid idempotent append, made wrong."""

BAD_DS_HEADERS: list[tuple[str, str, list[tuple[bytes, bytes]], bytes]] = [
    ("Producer-Id alone", "POST", [(b"producer-id", b"p")], b"[1]"),
    (
        "Producer-Epoch and -Seq without an id",
        "POST",
        [(b"producer-epoch", _INT), (b"producer-seq", _INT)],
        b"[1]",
    ),
    ("an empty append", "POST", [], b""),
    ("an empty JSON array", "POST", [], b"[]"),
    ("not JSON", "POST", [], b"[1"),
    ("invalid UTF-8 JSON", "POST", [], b'["\xff"]'),
    ("another content type", "POST", [(b"content-type", b"text/plain")], b"x"),
    ("no content type", "POST", [(b"content-type", b"")], b"x"),
    ("Stream-TTL in Arabic-Indic digits", "PUT", [(b"stream-ttl", "\u0661".encode())], b""),
    ("Stream-TTL negative", "PUT", [(b"stream-ttl", b"-1")], b""),
    ("Stream-TTL a float", "PUT", [(b"stream-ttl", b"1.5")], b""),
    ("Stream-TTL over a century", "PUT", [(b"stream-ttl", b"9" * 30)], b""),
    ("Stream-TTL with leading zeros", "PUT", [(b"stream-ttl", b"007")], b""),
    (
        "Stream-TTL and -Expires-At",
        "PUT",
        [(b"stream-ttl", b"60"), (b"stream-expires-at", b"2030-01-01T00:00:00Z")],
        b"",
    ),
    ("Stream-Expires-At not a time", "PUT", [(b"stream-expires-at", b"tomorrow")], b""),
    (
        "Stream-Expires-At in Arabic-Indic digits",
        "PUT",
        [(b"stream-expires-at", "\u0662\u0660\u0663\u0660-01-01T00:00:00Z".encode())],
        b"",
    ),
    ("Stream-Forked-From not a stream path", "PUT", [(b"stream-forked-from", b"elsewhere")], b""),
    (
        "Stream-Forked-From overlong",
        "PUT",
        [(b"stream-forked-from", b"/v1/stream/" + b"f" * 2000)],
        b"",
    ),
    ("Stream-Forked-From reserved", "PUT", [(b"stream-forked-from", b"/v1/stream/__ds/x")], b""),
    ("Stream-Forked-From a C1 control", "PUT", [(b"stream-forked-from", b"/v1/stream/\x85")], b""),
    (
        "Stream-Fork-Offset without a source",
        "PUT",
        [(b"stream-fork-offset", b"0000000000000000_0000000000000000")],
        b"",
    ),
    ("Stream-Fork-Sub-Offset without a source", "PUT", [(b"stream-fork-sub-offset", b"1")], b""),
    (
        "Stream-Fork-Offset in Arabic-Indic digits",
        "PUT",
        [
            (b"stream-forked-from", b"/v1/stream/SOURCE"),
            (b"stream-fork-offset", "\u0661_\u0661".encode()),
        ],
        b"",
    ),
    (
        "Stream-Fork-Sub-Offset negative",
        "PUT",
        [(b"stream-forked-from", b"/v1/stream/SOURCE"), (b"stream-fork-sub-offset", b"-1")],
        b"",
    ),
    (
        "Stream-Fork-Sub-Offset in Arabic-Indic digits",
        "PUT",
        [
            (b"stream-forked-from", b"/v1/stream/SOURCE"),
            (b"stream-fork-sub-offset", "\u0661".encode()),
        ],
        b"",
    ),
]
"""Durable Streams requests with a malformed header or body (``SOURCE``: the victim
stream's path). PUTs go to a new path each time."""
