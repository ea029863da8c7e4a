"""Hostile publishers beside healthy ones, on one real front-end (with API keys, a token
secret and a fake-provider worker), as a hypothesis state machine.

While the machine runs, healthy publishers append to three job feeds and to a Durable
Stream, and healthy readers follow them through every interface at once, as real network
clients (httpx, on a thread of their own): the SSE route ``GET /v1/streams/{id}/events``,
``/v1/events`` by ``stream=`` and by ``prefix=``, the Durable Streams catch-up ``GET``,
``live=long-poll`` and ``live=sse``; and a chat client submits chat after chat and reads
each answer's stream. Hostile publishers meanwhile send every write route (and the
reading routes their names reach) names, event types and bodies with control characters
(every C0, DEL and C1 character, a trailing ``\\n``, ``\\r``, NUL), percent-encoded
newlines and invalid UTF-8 in paths, non-ASCII digits, overlong strings, lists where
strings belong, odd encodings (UTF-16 JSON), bodies over their limits, malformed Durable
Streams headers and offsets. They are sent over bare sockets (``tests/support/rawhttp``),
so nothing is cleaned up on the way.

The invariants:

- every hostile request is answered, with a 4xx: never a 2xx (nothing it carries is
  stored), never a 5xx, never a connection dropped without an answer; its body is a JSON
  error (or uvicorn's own ``400`` for a request its HTTP parser refuses);
- every healthy reader gets every healthy event once, in order, through every interface
  (checked at the end, after the healthy streams end, waiting a bounded time), and every
  chat answer is whole;
- nothing is stored under a name that is not one (no Redis key holds a control character
  or a byte outside printable ASCII);
- the front-end's log holds no unhandled exception (``Traceback``), no asyncio
  ``Fatal error`` and no lost pub/sub connection.

A few inputs are hostile-looking but not refused by the documented contract (a Durable
Streams path is any path up to 1024 bytes; a ``Producer-Id`` any string without ``:``):
those are sent too, must never be a 5xx or a dropped connection, and, when a path that is
not a stream id is accepted, must name a stream of its own (its ``/v1/streams/`` twin is
404). How many of them were accepted is part of the printed summary.

Failures are collected, not raised, so that hypothesis neither shrinks nor replays (the
healthy state is shared by every example) and one run lists every kind of failure, each
with its first requests and answers. The run is derandomized, has no example database,
and prints how many hostile requests it sent (the terminal summary shows it in a plain
``pytest`` run).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import string
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis as redis_sync
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from broadcaster.auth import credentials, tokens
from broadcaster.core import keys
from broadcaster.core.embedded import EmbeddedRedis
from tests.support import rawhttp
from tests.support.procs import Proc, own_redis, parse_sse, start_frontend, start_worker

ADMIN = "admin-" + secrets.token_hex(8)
SECRET = secrets.token_hex(16)

MAX_EXAMPLES = 200
STEPS = 100
"""Examples of the machine, and steps in each: about 4,000 hostile requests, about a
minute on two cores with the readers and the worker running."""

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


# --- the world the examples share ---


@dataclass
class Failure:
    """One kind of failure: how often, and its first samples, one per distinct input."""

    count: int = 0
    samples: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    """What every example of the machine shares: the front-end, the healthy streams and
    what was published to them, and what went wrong."""

    fe: Proc
    redis_url: str
    run: str
    http: httpx.Client
    jwt: str
    """A token that may read, publish, chat and cancel anything: hostile requests carry it
    (or the admin key), so that they get past access control to the checks behind it."""
    healthy: list[str]
    ds_path: str
    victim: str
    victim_ds: str
    expected: dict[str, list[tuple[Any, Any]]]
    ds_expected: list[Any] = field(default_factory=list)
    ds_producer_seq: int = 0
    sent: int = 0
    open_sent: int = 0
    open_accepted: Counter[str] = field(default_factory=Counter)
    tally: Counter[str] = field(default_factory=Counter)
    failures: dict[str, Failure] = field(default_factory=lambda: defaultdict(Failure))
    serial: int = 0
    examples: int = 0
    steps: int = 0

    @property
    def prefix(self) -> str:
        return f"h{self.run}-"

    def fail(self, kind: str, detail: str, what: str = "") -> None:
        f = self.failures[kind]
        f.count += 1
        if len(f.samples) < 6 and what not in f.samples:
            f.samples[what] = detail[:600]

    def next(self) -> int:
        self.serial += 1
        return self.serial

    # --- requests ---

    def auth(self, jwt: bool = False) -> list[tuple[bytes, bytes]]:
        return [(b"authorization", b"Bearer " + (self.jwt if jwt else ADMIN).encode())]

    def send(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
    ) -> rawhttp.RawAnswer | str:
        try:
            return rawhttp.request(
                "127.0.0.1",
                self.fe.port or 0,
                method,
                target,
                headers=headers,
                body=body,
                stream_peek=0.05,
            )
        except rawhttp.NoAnswer as exc:
            return str(exc)
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"

    def hostile(
        self,
        kind: str,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        *,
        what: str = "",
        allowed: tuple[int, ...] | None = None,
    ) -> rawhttp.RawAnswer | None:
        """Send a request that must be refused: a 4xx (one of ``allowed``, if given) with
        a JSON error. Anything else is a failure of ``kind``."""
        self.sent += 1
        answer = self.send(method, target, headers, body)
        shown = f"{method} {target[:160]!r} {what}".strip()
        if isinstance(answer, str):
            self.tally["no answer"] += 1
            self.fail(f"{kind}: no answer (connection dropped)", f"{shown} -> {answer}", what)
            return None
        self.tally[f"{answer.status // 100}xx"] += 1
        status = answer.status
        said = f"{shown} -> {status} {answer.body[:200]!r}"
        if status >= 500:
            self.fail(f"{kind}: a 5xx", said, what)
        elif status < 400:
            self.fail(f"{kind}: accepted ({status})", said, what)
        elif allowed is not None and status not in allowed:
            self.fail(f"{kind}: {status}, not one of {allowed}", said, what)
        else:
            self._check_error_body(kind, method, answer, said, what)
        return answer

    def probe(
        self,
        kind: str,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        *,
        what: str = "",
    ) -> rawhttp.RawAnswer | None:
        """A request the contract does not call wrong: never a 5xx nor a dropped
        connection; counted among the accepted when it is a 2xx."""
        self.sent += 1
        self.open_sent += 1
        answer = self.send(method, target, headers, body)
        shown = f"{method} {target[:160]!r} {what}".strip()
        if isinstance(answer, str):
            self.tally["no answer"] += 1
            self.fail(f"{kind}: no answer (connection dropped)", f"{shown} -> {answer}", what)
            return None
        self.tally[f"{answer.status // 100}xx"] += 1
        said = f"{shown} -> {answer.status} {answer.body[:200]!r}"
        if answer.status >= 500:
            self.fail(f"{kind}: a 5xx", said, what)
        elif answer.status < 300:
            self.open_accepted[kind] += 1
        elif 400 <= answer.status < 500:
            self._check_error_body(kind, method, answer, said, what)
        return answer

    def _check_error_body(
        self, kind: str, method: str, answer: rawhttp.RawAnswer, said: str, what: str
    ) -> None:
        if method == "HEAD":
            return
        if answer.status == 400 and answer.body == b"Invalid HTTP request received.":
            return  # uvicorn's HTTP parser refused it: before the application
        try:
            payload = json.loads(answer.body)
            ok = isinstance(payload.get("error"), str) and isinstance(payload.get("message"), str)
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            self.fail(f"{kind}: an error that is not JSON with error and message", said, what)


# --- the machine ---


class HostileInput(RuleBasedStateMachine):
    world: World

    def __init__(self) -> None:
        super().__init__()
        self.world.examples += 1

    @invariant()
    def count_steps(self) -> None:
        self.world.steps += 1

    # --- healthy publishers ---

    @rule(stream=st.integers(0, 2), size=st.integers(1, 3))
    def publish_healthy(self, stream: int, size: int) -> None:
        w = self.world
        sid = w.healthy[stream]
        expected = w.expected[sid]
        batch = [{"type": "data-step", "n": len(expected) + i} for i in range(size)]
        r = w.http.post(f"/v1/streams/{sid}/events", json=batch)
        if r.status_code != 201:
            w.fail("a healthy publish refused", f"{sid}: {r.status_code} {r.text[:200]}")
            return
        expected += [("data-step", e["n"]) for e in batch]

    @rule()
    def append_healthy_durable(self) -> None:
        w = self.world
        message = {"n": len(w.ds_expected)}
        headers = {
            "content-type": "application/json",
            "producer-id": "healthy",
            "producer-epoch": "0",
            "producer-seq": str(w.ds_producer_seq),
        }
        r = w.http.post(f"/v1/stream/{w.ds_path}", headers=headers, content=json.dumps([message]))
        if r.status_code != 200:
            w.fail("a healthy Durable Streams append refused", f"{r.status_code} {r.text[:200]}")
            return
        w.ds_producer_seq += 1
        w.ds_expected.append(message)

    # --- hostile names, on every route that takes one ---

    @rule(name=names)
    def hostile_name(self, name: Name) -> None:
        w = self.world
        n, shown = name.raw, f"name {name.shown}"
        event = json.dumps({"type": "data-x"}).encode()
        approval = b'{"approvalId": "a1", "approved": true}'
        json_h = [(b"content-type", b"application/json")]
        for method, target, body in [
            ("POST", b"/v1/streams/" + n + b"/events", event),
            ("POST", b"/v1/streams/" + n + b"/events", b"[" + event + b"," + event + b"]"),
            ("POST", b"/v1/streams/" + n + b"/events?expected_last_event_id=0", event),
            ("POST", b"/v1/streams/" + n + b"/tokens", b""),
            ("POST", b"/v1/streams/" + n + b"/tokens", b'{"ttl_seconds": 60}'),
            ("POST", b"/v1/generations/" + n + b"/cancel", b""),
            ("POST", b"/v1/generations/" + n + b"/approvals", approval),
            ("POST", b"/v1/chat/" + n + b"/stop", b""),
            ("POST", b"/v1/chat/" + n + b"/tokens", b""),
            ("POST", b"/v1/chat/" + n + b"/approvals", approval),
        ]:
            route = target.replace(n, b"{name}").split(b"?")[0].decode()
            w.hostile(f"{method} {route}", method, target, w.auth() + json_h, body, what=shown)
        for target in [
            b"/v1/streams/" + n + b"/events",
            b"/v1/streams/" + n + b"/viewers",
            b"/v1/generations/" + n,
            b"/v1/events?stream=" + n,
            b"/v1/events?prefix=" + n,
            b"/v1/events?stream=" + w.healthy[0].encode() + b"&prefix=" + n,
            b"/v1/chat/" + n + b"/stream",
            b"/v1/chat/" + n + b"/messages",
        ]:
            route = target.replace(n, b"{name}").decode()
            w.hostile(f"GET {route}", "GET", target, w.auth(jwt=True), what=shown)

    @rule(name=bad_names, under_prefix=st.booleans())
    def hostile_name_under_a_healthy_prefix(self, name: str, under_prefix: bool) -> None:
        """A name that a dashboard following the healthy prefix would take for one of
        its streams, were it accepted."""
        w = self.world
        full = (w.prefix + name) if under_prefix else (w.healthy[0] + name)
        w.hostile(
            "POST /v1/streams/{healthy prefix + name}/events",
            "POST",
            b"/v1/streams/" + encode_segment(full) + b"/events",
            w.auth(),
            json.dumps({"type": "data-step", "n": -1}).encode(),
            what=f"name {full!r}",
        )

    @rule(
        field=st.sampled_from(["id", "chatId"]),
        value=st.one_of(bad_names, st.sampled_from([["chat-1"], 7, True, {"id": "x"}, ""])),
    )
    def hostile_chat_id(self, field: str, value: Any) -> None:
        w = self.world
        message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
        body = json.dumps({field: value, "messages": [message]}, ensure_ascii=False).encode()
        w.hostile(
            f"POST /v1/chat with a bad {field}",
            "POST",
            b"/v1/chat",
            [*w.auth(), (b"content-type", b"application/json")],
            body,
            what=f"{field}={value!r:.80}",
        )

    @rule(value=st.one_of(bad_names, st.sampled_from([["gen-1"], 7, False, {"id": "x"}, ""])))
    def hostile_generation_id(self, value: Any) -> None:
        w = self.world
        body = json.dumps({"prompt": "x", "max_tokens": 1, "id": value}, ensure_ascii=False)
        w.hostile(
            "POST /v1/generations with a bad id",
            "POST",
            b"/v1/generations",
            [*w.auth(), (b"content-type", b"application/json")],
            body.encode(),
            what=f"id={value!r:.80}",
        )

    # --- hostile events and bodies ---

    @rule(
        etype=st.sampled_from(BAD_TYPES),
        shape=st.sampled_from(["single", "last", "first"]),
        towards=st.sampled_from(["healthy", "victim"]),
    )
    def hostile_event_type(self, etype: Any, shape: str, towards: str) -> None:
        w = self.world
        sid = w.healthy[w.next() % 3] if towards == "healthy" else w.victim
        bad = {"type": etype, "n": -1}
        ok = {"type": "data-ok", "n": -1}
        body: Any = {"single": bad, "last": [ok, bad], "first": [bad, ok]}[shape]
        w.hostile(
            "POST /v1/streams/{id}/events with a bad type",
            "POST",
            f"/v1/streams/{sid}/events".encode(),
            w.auth(),
            json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass"),
            what=f"type={etype!r} ({shape}, to a {towards} stream)",
            allowed=(422,),
        )

    @rule(body=st.sampled_from(BAD_EVENT_BODIES), towards=st.sampled_from(["healthy", "victim"]))
    def hostile_event_body(self, body: tuple[str, bytes], towards: str) -> None:
        w = self.world
        sid = w.healthy[w.next() % 3] if towards == "healthy" else w.victim
        w.hostile(
            "POST /v1/streams/{id}/events with a bad body",
            "POST",
            f"/v1/streams/{sid}/events".encode(),
            [*w.auth(), (b"content-type", b"application/json")],
            body[1],
            what=f"{body[0]} (to a {towards} stream)",
        )

    @rule(value=st.sampled_from(BAD_EXPECTED_SEQ))
    def hostile_expected_seq(self, value: str) -> None:
        w = self.world
        w.hostile(
            "POST /v1/streams/{id}/events?expected_last_event_id=<not an integer>",
            "POST",
            f"/v1/streams/{w.victim}/events?expected_last_event_id={value}".encode(),
            w.auth(),
            b'{"type": "data-x"}',
            what=f"expected_last_event_id={value}",
            allowed=(422,),
        )

    @rule(value=st.sampled_from(LAX_EXPECTED_SEQ))
    def lax_expected_seq(self, value: str) -> None:
        w = self.world
        w.probe(
            "POST /v1/streams/{new id}/events?expected_last_event_id=<an integer, laxly>",
            "POST",
            f"/v1/streams/lax-{w.run}-{w.next()}/events?expected_last_event_id={value}".encode(),
            w.auth(),
            b'{"type": "data-x"}',
            what=f"expected_last_event_id={value}",
        )

    @rule(body=st.sampled_from(ODD_ENCODINGS))
    def hostile_encoding(self, body: tuple[str, bytes]) -> None:
        w = self.world
        w.hostile(
            "POST /v1/streams/{id}/events with a body that is not UTF-8",
            "POST",
            f"/v1/streams/{w.victim}/events".encode(),
            [*w.auth(), (b"content-type", b"application/json")],
            body[1],
            what=body[0],
            allowed=(422,),
        )

    @rule(body=st.sampled_from(BAD_TOKEN_BODIES), route=st.sampled_from(["streams", "chat"]))
    def hostile_token_request(self, body: tuple[str, bytes], route: str) -> None:
        w = self.world
        w.hostile(
            f"POST /v1/{route}/{{id}}/tokens with a bad body",
            "POST",
            f"/v1/{route}/{w.victim}/tokens".encode(),
            [*w.auth(), (b"content-type", b"application/json")],
            body[1],
            what=body[0],
        )

    # --- Durable Streams ---

    @rule(case=st.sampled_from(BAD_PRODUCER_HEADERS))
    def hostile_producer(self, case: tuple[str, list[tuple[bytes, bytes]]]) -> None:
        w = self.world
        headers = {
            b"content-type": b"application/json",
            b"producer-id": b"hostile",
            b"producer-epoch": b"0",
            b"producer-seq": b"0",
        }
        headers.update(dict(case[1]))
        w.hostile(
            "POST /v1/stream/{path} with a bad Producer-* header",
            "POST",
            f"/v1/stream/{w.victim_ds}".encode(),
            w.auth() + list(headers.items()),
            b'[{"hostile": true}]',
            what=case[0],
        )

    @rule(case=st.sampled_from(BAD_DS_HEADERS))
    def hostile_durable_request(
        self, case: tuple[str, str, list[tuple[bytes, bytes]], bytes]
    ) -> None:
        w = self.world
        label, method, extra, body = case
        headers = {b"content-type": b"application/json"}
        for k, v in extra:
            headers[k] = v.replace(b"SOURCE", w.victim_ds.encode())
        if not headers[b"content-type"]:
            del headers[b"content-type"]
        path = w.victim_ds if method == "POST" else f"{w.victim_ds}-new{w.next()}"
        w.hostile(
            f"{method} /v1/stream/{{path}} with a bad header or body",
            method,
            f"/v1/stream/{path}".encode(),
            w.auth(jwt=True) + list(headers.items()),
            body,
            what=label,
        )

    @rule(
        name=st.one_of(
            st.tuples(valid_id, st.sampled_from(["\n", "\r", "\x00", "\x0b", "\x7f", "\x85"])).map(
                _joined
            ),
            st.sampled_from(["docs/a\x00b", "docs/a\nb", "docs/\x85", "x\r\ny"]),
        ),
        method=st.sampled_from(["PUT", "POST", "DELETE"]),
    )
    def durable_path_with_a_control(self, name: str, method: str) -> None:
        """Any path up to 1024 bytes names a Durable Stream, so such a path may be
        accepted; a path that is not a stream id must then be a stream of its own, which
        the routes of streams of events do not know (404)."""
        w = self.world
        target = b"/v1/stream/" + encode_segment(name).replace(b"%2F", b"/")
        headers = [*w.auth(), (b"content-type", b"application/json")]
        body = b"" if method == "DELETE" else b"[1]"
        if method == "POST":  # there must be one to append to
            w.probe("PUT /v1/stream/{path with a control}", "PUT", target, headers, what=repr(name))
        answer = w.probe(
            f"{method} /v1/stream/{{path with a control}}",
            method,
            target,
            headers,
            body,
            what=repr(name),
        )
        if answer is None or not 200 <= answer.status < 300 or "/" in name:
            return
        twin = b"/v1/streams/" + encode_segment(name) + b"/events"
        w.hostile(
            "GET /v1/streams/{a Durable Streams path that is not an id}/events",
            "GET",
            twin,
            w.auth(jwt=True),
            what=f"after {method} /v1/stream/{name!r} answered {answer.status}",
            allowed=(404,),
        )

    @rule(
        path=st.one_of(
            st.integers(1025, 3000).map(lambda n: "p" * n),
            st.sampled_from(["__ds/x", "__ds", "__ds/subscriptions/x", ""]),
        ),
        method=st.sampled_from(["PUT", "POST", "DELETE"]),
    )
    def durable_path_refused(self, path: str, method: str) -> None:
        w = self.world
        w.hostile(
            f"{method} /v1/stream/{{overlong, reserved or empty path}}",
            method,
            b"/v1/stream/" + path.encode(),
            [*w.auth(), (b"content-type", b"application/json")],
            b"[1]",
            what=f"path of {len(path)} bytes: {path[:20]!r}",
        )

    @rule(
        segment=st.tuples(valid_id, st.sampled_from(INVALID_UTF8)),
        method=st.sampled_from(["PUT", "POST", "DELETE"]),
    )
    def durable_path_not_utf8(self, segment: tuple[str, bytes], method: str) -> None:
        """A path whose percent-encoding is not UTF-8: decoded with U+FFFD, two such paths
        would be one stream. Sent, and counted; the contract does not say."""
        w = self.world
        w.probe(
            "PUT/POST/DELETE /v1/stream/{path not UTF-8}",
            method,
            b"/v1/stream/docs/" + segment[0].encode() + segment[1],
            [*w.auth(), (b"content-type", b"application/json")],
            b"" if method == "DELETE" else b"[1]",
            what=repr(segment),
        )

    @rule(
        offset=st.sampled_from(BAD_OFFSETS),
        live=st.sampled_from([b"", b"&live=long-poll", b"&live=sse"]),
        where=st.sampled_from(["durable", "feed"]),
    )
    def hostile_offset(self, offset: bytes, live: bytes, where: str) -> None:
        w = self.world
        path = w.ds_path if where == "durable" else w.healthy[0]
        w.hostile(
            "GET /v1/stream/{path}?offset=<malformed>",
            "GET",
            f"/v1/stream/{path}?offset=".encode() + offset + live,
            w.auth(jwt=True),
            what=f"offset={offset.decode()}{live.decode()} ({where})",
            allowed=(400,),
        )

    @rule(point=st.sampled_from(BAD_DASHBOARD_RESUME))
    def hostile_dashboard_resume_point(self, point: str) -> None:
        w = self.world
        w.hostile(
            "GET /v1/events?last_event_id=<malformed>",
            "GET",
            f"/v1/events?stream={w.healthy[0]}&last_event_id={point}".encode(),
            w.auth(jwt=True),
            what=point,
            allowed=(400,),
        )

    @rule(raw=st.sampled_from([b"\n", b"\r", b"\x00", b"\x01", b"\x7f", b"\x85", b" ", b"\xff"]))
    def raw_bytes_in_the_request_target(self, raw: bytes) -> None:
        """Bytes no client percent-encodes away: the HTTP parser refuses the request, or
        the route does; either way an answer comes."""
        w = self.world
        w.hostile(
            "POST /v1/streams/{raw bytes}/events",
            "POST",
            b"/v1/streams/x" + raw + b"y/events",
            w.auth(),
            b'{"type": "data-x"}',
            what=repr(raw),
        )


# --- the healthy readers ---


@dataclass
class Reader:
    """One healthy reader: what it got, and what went wrong."""

    name: str
    streams: list[str]
    got: dict[str, list[tuple[Any, Any]]] = field(default_factory=lambda: defaultdict(list))
    seqs: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    finished: bool = False

    def error(self, message: str) -> None:
        if len(self.errors) < 8:
            self.errors.append(message[:400])


def _typed(obj: Any) -> tuple[Any, Any]:
    if isinstance(obj, dict):
        return obj.get("type"), obj.get("n")
    return ("<not an object>", repr(obj)[:80])


async def _frames(resp: httpx.Response) -> Any:
    """The SSE blocks of a streaming response, as ``parse_sse`` reads them."""
    buf = b""
    async for chunk in resp.aiter_raw():
        buf += chunk
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            continue
        block, buf = buf[: cut + 2], buf[cut + 2 :]
        events, _, _ = parse_sse(block)
        for e in events:
            yield e


async def read_sse_route(client: httpx.AsyncClient, r: Reader, token: str) -> None:
    sid = r.streams[0]
    async with client.stream(
        "GET", f"/v1/streams/{sid}/events", headers={"authorization": f"Bearer {token}"}
    ) as resp:
        r.connected.set()
        if resp.status_code != 200:
            r.error(f"status {resp.status_code}: {(await resp.aread())[:200]!r}")
            return
        async for e in _frames(resp):
            if e.data == "[DONE]":
                r.finished = True
                return
            try:
                r.got[sid].append(_typed(json.loads(e.data)))
            except ValueError:
                r.error(f"a frame that is not JSON: {e!r}")
                continue
            if e.id is None or not e.id.split(".")[0].isdigit():
                r.error(f"a frame without a seq in its id: {e!r}")
            else:
                r.seqs[sid].append(int(e.id.split(".")[0]))
        r.error("the response ended without [DONE]")


async def read_dashboard(client: httpx.AsyncClient, r: Reader, query: str, token: str) -> None:
    """``/v1/events``: named streams end the response; a prefix does not, so this returns
    once every healthy stream's terminal event came."""
    ended: set[str] = set()
    async with client.stream(
        "GET", f"/v1/events?{query}", headers={"authorization": f"Bearer {token}"}
    ) as resp:
        r.connected.set()
        if resp.status_code != 200:
            r.error(f"status {resp.status_code}: {(await resp.aread())[:200]!r}")
            return
        async for e in _frames(resp):
            if e.event is None:
                continue
            try:
                data = json.loads(e.data)
                stream, seq, event = data["stream"], data["seq"], data["event"]
            except (ValueError, KeyError, TypeError):
                r.error(f"a frame that is not {{stream, seq, event}}: {e!r}")
                continue
            if stream not in r.streams:
                r.error(f"an event of a stream it does not follow: {stream!r} {data!r}")
                continue
            r.got[stream].append(_typed(event))
            r.seqs[stream].append(seq)
            if _typed(event)[0] == "finish":
                ended.add(stream)
                if ended == set(r.streams):
                    r.finished = True
                    return
        r.error(f"the response ended before the end of {sorted(set(r.streams) - ended)}")


async def read_durable(client: httpx.AsyncClient, r: Reader, mode: str, token: str) -> None:
    """A Durable Streams reader: catch-up pages, long-polls or one SSE response, to the
    stream's closure."""
    path = r.streams[0]
    headers = {"authorization": f"Bearer {token}"}
    url = f"/v1/stream/{path}"
    if mode == "sse":
        async with client.stream(
            "GET", url, params={"offset": "-1", "live": "sse"}, headers=headers
        ) as resp:
            r.connected.set()
            if resp.status_code != 200:
                r.error(f"status {resp.status_code}: {(await resp.aread())[:200]!r}")
                return
            async for e in _frames(resp):
                try:
                    data = json.loads(e.data)
                except ValueError:
                    r.error(f"an SSE event that is not JSON: {e!r}")
                    continue
                if e.event == "data":
                    r.got[path] += [_durable_item(m) for m in data]
                elif e.event == "control" and data.get("streamClosed"):
                    r.finished = True
                    return
            r.error("the SSE response ended before streamClosed")
        return
    offset, cursor = "-1", None
    while True:
        params = {"offset": offset}
        if mode == "long-poll":
            params["live"] = "long-poll"
            if cursor:
                params["cursor"] = cursor
        resp = await client.get(url, params=params, headers=headers)
        r.connected.set()
        if resp.status_code not in (200, 204):
            r.error(f"status {resp.status_code}: {resp.text[:200]}")
            return
        if resp.status_code == 200:
            r.got[path] += [_durable_item(m) for m in resp.json()]
        offset = resp.headers.get("stream-next-offset", offset)
        cursor = resp.headers.get("stream-cursor", cursor)
        up_to_date = resp.headers.get("stream-up-to-date") == "true"
        if up_to_date and resp.headers.get("stream-closed") == "true":
            r.finished = True
            return
        if mode == "catch-up" and up_to_date:
            await asyncio.sleep(0.2)


def _durable_item(message: Any) -> tuple[Any, Any]:
    """A message of a job feed read as a Durable Stream is its event; one of the healthy
    Durable Stream is ``{"n": k}``."""
    if isinstance(message, dict) and "type" not in message:
        return ("message", message.get("n"))
    return _typed(message)


@dataclass
class ChatClient:
    """Submits chats one after another until told to stop, reading each answer whole."""

    answers: int = 0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    async def run(self, client: httpx.AsyncClient, run: str) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            body = {
                "id": f"chat-{run}-{i}",
                "messages": [
                    {"id": "u1", "role": "user", "parts": [{"type": "text", "text": f"hello {i}"}]}
                ],
                "max_tokens": 8,
            }
            headers = {"authorization": f"Bearer {ADMIN}"}
            async with client.stream("POST", "/v1/chat", json=body, headers=headers) as resp:
                if resp.status_code != 200:
                    self.error(
                        f"chat {i}: status {resp.status_code}: {(await resp.aread())[:200]!r}"
                    )
                    return
                events = [e async for e in _frames(resp)]
            ids = [int(e.id.split(".")[0]) for e in events if e.id is not None]
            typed = [e for e in events if e.event is not None]
            if (
                ids != list(range(1, len(ids) + 1))
                or not typed
                or typed[-1].event != "finish"
                or events[-1].data != "[DONE]"
            ):
                self.error(f"chat {i}: not whole: {[(e.id, e.event) for e in events][:40]}")
                return
            self.answers += 1
            await asyncio.sleep(0.3)

    def error(self, message: str) -> None:
        self.errors.append(message[:400])


class Readers:
    """The healthy readers, on an event loop of their own on a thread."""

    def __init__(self, world: World) -> None:
        self.world = world
        feeds = world.healthy
        self.list: list[Reader] = [Reader(f"SSE route {sid}", [sid]) for sid in feeds]
        self.named = Reader("/v1/events?stream=", list(feeds))
        self.prefixed = Reader("/v1/events?prefix=", list(feeds))
        self.list += [self.named, self.prefixed]
        self.durable = []
        for path in (world.ds_path, feeds[0]):
            for mode in ("catch-up", "long-poll", "sse"):
                self.durable.append((Reader(f"Durable Streams {mode} of {path}", [path]), mode))
        self.list += [r for r, _ in self.durable]
        self.chat = ChatClient()
        self.crashed: list[str] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.thread = threading.Thread(target=self._run, name="healthy-readers", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        for r in self.list:
            if not r.connected.wait(max(0.0, deadline - time.monotonic())):
                raise AssertionError(f"{r.name} did not connect: {r.errors}")

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        w = self.world
        read = tokens.mint_token(SECRET, read=["*"], ttl_seconds=3600)
        timeout = httpx.Timeout(30, read=60)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(base_url=w.fe.url, timeout=timeout, limits=limits) as c:
            named = "&".join(f"stream={s}" for s in w.healthy)
            jobs = [
                *(read_sse_route(c, r, read) for r in self.list[:3]),
                read_dashboard(c, self.named, named, read),
                read_dashboard(c, self.prefixed, f"prefix={w.prefix}", read),
                *(read_durable(c, r, mode, read) for r, mode in self.durable),
                self.chat.run(c, w.run),
            ]
            self.tasks = [asyncio.create_task(self._guard(job)) for job in jobs]
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _guard(self, job: Any) -> None:
        try:
            await job
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # recorded: the check at the end names the reader
            self.crashed.append(f"{type(exc).__name__}: {exc}"[:400])

    def finish(self, seconds: float) -> None:
        """Wait for the readers to reach the end; cancel those that did not."""
        self.chat.stop.set()
        self.thread.join(seconds)
        if self.thread.is_alive() and self.loop is not None:
            for task in self.tasks:
                self.loop.call_soon_threadsafe(task.cancel)
            self.thread.join(10)


# --- fixtures ---


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Proc, EmbeddedRedis]]:
    logs: Path = tmp_path_factory.mktemp("hostile")
    redis = own_redis(logs / "redis")
    procs: list[Proc] = []
    try:
        procs.append(
            start_frontend(
                redis.url,
                logs,
                "hostile-frontend",
                env={
                    "BROADCASTER_API_KEYS": credentials.hash_key(ADMIN),
                    "BROADCASTER_TOKEN_SECRET": SECRET,
                    "BROADCASTER_RATE_LIMIT_PER_MINUTE": "0",
                    "BROADCASTER_MAX_BODY_BYTES": str(MAX_BODY),
                    "BROADCASTER_CHAT_MAX_BODY_BYTES": str(MAX_BODY),
                    "BROADCASTER_MAX_EVENT_BYTES": str(MAX_EVENT),
                    "BROADCASTER_DS_LONG_POLL_SECONDS": "1",
                },
            )
        )
        procs.append(
            start_worker(redis.url, logs, "hostile-worker", env={"WORKER_FAKE_DELAY_MS": "1"})
        )
        yield procs[0], procs[1], redis
    finally:
        for p in procs:
            p.stop()
        redis.stop()


LOG_ALARMS = ("Traceback", "Fatal error", "connection lost", "unhandled error", "Exception in")


@pytest.mark.timeout(300)  # about a minute alone; more on two cores shared with other runs
def test_hostile_publishers_beside_healthy_ones(
    stack: tuple[Proc, Proc, EmbeddedRedis], record_property: Callable[[str, object], None]
) -> None:
    fe, worker, redis = stack
    started = time.monotonic()
    run = secrets.token_hex(3)
    http = httpx.Client(base_url=fe.url, timeout=10, headers={"authorization": f"Bearer {ADMIN}"})
    everything = ["*"]
    world = World(
        fe=fe,
        redis_url=redis.url,
        run=run,
        http=http,
        jwt=tokens.mint_token(
            SECRET,
            read=everything,
            publish=everything,
            chat=everything,
            cancel=everything,
            ttl_seconds=3600,
        ),
        healthy=[f"h{run}-{i}" for i in range(3)],
        ds_path=f"healthy/{run}/durable",
        victim=f"victim-{run}",
        victim_ds=f"victim/{run}/durable",
        expected={},
    )
    try:
        for sid in world.healthy:  # the streams exist before their readers come
            r = http.post(f"/v1/streams/{sid}/events", json={"type": "data-step", "n": 0})
            assert r.status_code == 201, r.text
            world.expected[sid] = [("data-step", 0)]
        json_ct = {"content-type": "application/json"}
        assert http.put(f"/v1/stream/{world.ds_path}", headers=json_ct).status_code == 201
        assert (
            http.put(f"/v1/stream/{world.victim_ds}", headers=json_ct, content=b"[0]").status_code
            == 201
        )
        readers = Readers(world)
        readers.start()

        HostileInput.world = world
        run_state_machine_as_test(
            HostileInput,
            settings=settings(
                max_examples=MAX_EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            ),
        )
        machine_seconds = time.monotonic() - started

        # The healthy streams end; every reader must then have all of them.
        for sid in world.healthy:
            r = http.post(f"/v1/streams/{sid}/events", json={"type": "finish"})
            assert r.status_code == 201, r.text
            world.expected[sid].append(("finish", None))
        r = http.post(f"/v1/stream/{world.ds_path}", headers={"stream-closed": "true"})
        assert r.status_code == 204, r.text
        readers.finish(READERS_SECONDS)
    finally:
        http.close()

    problems = [
        f"{kind}: {f.count} time(s), e.g.\n      " + "\n      ".join(f.samples.values())
        for kind, f in world.failures.items()
    ]
    problems += _reader_problems(world, readers)
    problems += _stored_names(redis.url)
    for p in (fe, worker):
        alarms = _alarms(p)
        problems += [f"{p.name} log: {line}" for line in alarms]
        if alarms:
            problems.append(f"(the whole log: {p.log_path})")

    elapsed = time.monotonic() - started
    summary = (
        f"hostile requests sent: {world.sent} in {world.examples} examples, {world.steps} "
        f"steps ({world.open_sent} of inputs the contract "
        f"leaves open, accepted: {dict(world.open_accepted) or 'none'}); answers "
        f"{dict(world.tally)}; healthy events {sum(map(len, world.expected.values()))} to "
        f"{len(readers.list)} readers, {len(world.ds_expected)} Durable Streams appends, "
        f"{readers.chat.answers} chat answers; {elapsed:.0f} s ({machine_seconds:.0f} s "
        f"of state machine)"
    )
    print(summary)
    record_property("summary", summary)
    assert not problems, "\n  ".join(["hostile input:", *problems])


def _reader_problems(world: World, readers: Readers) -> list[str]:
    out = [f"a reader crashed: {c}" for c in readers.crashed]
    ds = [("message", m["n"]) for m in world.ds_expected]
    for r in readers.list:
        for e in r.errors:
            out.append(f"{r.name}: {e}")
        if not r.finished:
            out.append(f"{r.name}: did not reach the end of its streams")
        for sid in r.streams:
            want = ds if sid == world.ds_path else world.expected[sid]
            got = r.got.get(sid, [])
            if got != want:
                out.append(f"{r.name}: {_difference(sid, got, want)}")
            seqs = r.seqs.get(sid)
            if seqs is not None and seqs != list(range(1, len(seqs) + 1)):
                out.append(f"{r.name}: seqs of {sid} not 1..n once each: {seqs[:60]}")
    for e in readers.chat.errors:
        out.append(f"chat client: {e}")
    if readers.chat.answers == 0:
        out.append("chat client: no chat answered")
    return out


def _difference(sid: str, got: list[Any], want: list[Any]) -> str:
    at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
    if at is None:
        at = min(len(got), len(want))
    return (
        f"{sid}: got {len(got)} events, expected {len(want)}; first difference at {at}: "
        f"got {got[at : at + 3]}, expected {want[at : at + 3]}"
    )


def _stored_names(redis_url: str) -> list[str]:
    """Keys holding a byte outside printable ASCII: a name that is not one, stored."""
    client = redis_sync.Redis.from_url(redis_url)
    try:
        bad = [k for k in client.scan_iter(count=1000) if any(b <= 0x20 or b >= 0x7F for b in k)]
    finally:
        client.close()
    if not bad:
        return []
    return [f"{len(bad)} Redis key(s) under names that are not stream ids, e.g. {sorted(bad)[:6]}"]


def _alarms(proc: Proc) -> list[str]:
    """The log's alarming lines, alike ones counted together (numbers aside); a traceback
    by its exception (the first line after it that is not indented)."""
    lines = proc.log().splitlines()
    found: dict[str, list[Any]] = {}
    for i, line in enumerate(lines):
        if not any(a in line for a in LOG_ALARMS):
            continue
        said = re.sub(r"^\d{4}-\d\d-\d\d [\d:,]+ ", "", line)
        if "Traceback" in said:
            said += " ... " + next((ln for ln in lines[i + 1 :] if ln[:1] not in " \t"), "")
        seen = found.setdefault(re.sub(r"\d+", "N", said), [0, said[:400]])
        seen[0] += 1
    return [f"{n} x {said}" for n, said in sorted(found.values(), key=lambda v: -v[0])]
