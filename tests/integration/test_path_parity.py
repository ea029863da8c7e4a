"""The two ways a viewer's request is answered (from the parser, ``FastViewers``, and by
the app) answer alike: the same requests, sent over bare sockets to one front-end with
the parser's path on and then off (``protocol.fast = None``: every request the app's),
get the same status, headers (less ``date``) and body; and requests pipelined behind a
viewer (HTTP/1.1 allows it; a proxy may send it) are each answered whole, once, in
order, on both. (With CORS configured the app answers every viewer: test_fast_viewers.)"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from broadcaster.auth import tokens
from tests.support.fast_viewers import NEWEST, path, serving, stream
from tests.support.inprocess import Front
from tests.support.polling import until

pytestmark = pytest.mark.anyio

SECRET = "path-parity-test-secret-0123456789abcdef"
AUDIENCE = "parity-audience"
ENV = {
    "BROADCASTER_TOKEN_SECRET": SECRET,
    "BROADCASTER_TOKEN_AUDIENCE": AUDIENCE,
    "BROADCASTER_RETRY_JITTER_MS": "0",
    "BROADCASTER_MAX_CONNECTIONS_PER_SUBJECT": "1",
    "BROADCASTER_MAX_CONNECTIONS_PER_ADDRESS": "1",
    "BROADCASTER_TRUSTED_PROXIES": "*",
}
_seq = itertools.count(1)


def token(read: list[str], *, sub: str | None = None, **kw: Any) -> str:
    """A viewer token; each of its own subject unless ``sub`` names one (one connection
    per subject here)."""
    kw.setdefault("audience", AUDIENCE)
    kw.setdefault("ttl_seconds", 600)
    return tokens.mint_token(SECRET, read=read, sub=sub or f"s{next(_seq)}", **kw)


def request(
    target: str,
    *headers: str,
    method: str = "GET",
    version: str = "1.1",
    body: bytes = b"",
    address: str = "",
) -> bytes:
    """A request's bytes, from an address of its own (one connection per address here)
    unless ``address`` names one."""
    address = address or f"198.51.{next(_seq) // 250}.{next(_seq) % 250 + 1}"
    lines = [f"{method} {target} HTTP/{version}", "host: t", f"x-forwarded-for: {address}"]
    lines += list(headers)
    if body:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Answer:
    """One response read off a connection: its status line, headers (less the date and trace ids)
    and body; an SSE body that goes on is read to its first blank line."""

    def __init__(self, status: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def key(self) -> tuple[Any, ...]:
        headers = sorted(
            (k, v) for k, v in self.headers if k not in (b"date", b"traceparent", b"x-trace-id")
        )
        return self.status, headers, re.sub(rb"(id: \d+)\.[0-9a-f]+", rb"\1", self.body)

    def __repr__(self) -> str:
        return f"Answer({self.status!r}, {self.headers!r}, {self.body[:300]!r})"


class Reader:
    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader, self.buf = reader, b""

    async def _more(self) -> None:
        data = await asyncio.wait_for(self.reader.read(65536), 10)
        assert data, f"closed after {self.buf[-300:]!r}"
        self.buf += data

    async def _upto(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            await self._more()
        part, _, self.buf = self.buf.partition(marker)
        return part

    async def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._more()
        part, self.buf = self.buf[:n], self.buf[n:]
        return part

    async def answer(self, method: str = "GET", *, whole: bool = False) -> Answer:
        """The next response; an SSE one to its first blank line unless ``whole`` (then
        to the chunked body's end)."""
        head = await self._upto(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        headers = [(k.lower(), v) for k, _, v in (ln.partition(b": ") for ln in lines)]
        found = dict(headers)
        if method == "HEAD" or status.split(b" ")[1] in (b"204", b"304"):
            return Answer(status, headers, b"")
        if b"content-length" in found:
            return Answer(status, headers, await self._take(int(found[b"content-length"])))
        if found.get(b"transfer-encoding") != b"chunked":  # HTTP/1.0: until the close
            return Answer(status, headers, await self._upto(b"\n\n"))
        body = b""
        while True:
            size = int(await self._upto(b"\r\n"), 16)  # fails on a body cut short
            chunk = await self._take(size + 2)
            body += chunk[:-2]
            if size == 0 or (not whole and b"\n\n" in body):
                return Answer(status, headers, body)

    async def answer_rest(self) -> bytes:
        """The rest of a chunked body ``answer`` left, to its end."""
        body = b""
        while True:
            line = await self._upto(b"\r\n")
            assert re.fullmatch(rb"[0-9a-f]+", line), (
                f"a chunked body cut short: {line!r} {self.buf[:300]!r}"
            )
            size = int(line, 16)
            if not size:
                break
            body += (await self._take(size + 2))[:-2]
        await self._take(2)
        return body


@pytest.fixture
async def front(redis_url: str) -> AsyncIterator[Front]:
    async with serving(redis_url, **ENV) as made:
        yield made


async def answers(front: Front, raw: bytes, *, fast: bool, method: str = "GET") -> Answer:
    protocol = front.server.config.http_protocol_class
    saved = protocol.fast  # type: ignore[attr-defined]
    protocol.fast = saved if fast else None  # type: ignore[attr-defined]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
        try:
            writer.write(raw)
            return await Reader(reader).answer(method)
        finally:
            writer.close()
    finally:
        protocol.fast = saved  # type: ignore[attr-defined]


async def test_the_parser_and_the_app_answer_every_request_alike(front: Front) -> None:
    sid = "parity-" + secrets.token_hex(4)
    mine = token([sid])
    await stream(front, 3, f"authorization: Bearer {mine}", "x-forwarded-for: 192.0.2.1", sid=sid)
    at = f"last-event-id: {NEWEST[sid]}"
    auth = lambda t: f"authorization: Bearer {t}"  # noqa: E731
    # Held open for the limit cases: one subject's, one address's only connection.
    held_sub, held_addr = "held-subject", "203.0.113.77"
    holders = []
    for raw in (
        request(path(sid), auth(token([sid], sub=held_sub)), at),
        request(path(sid), auth(token([sid])), at, address=held_addr),
    ):
        r, w = await asyncio.open_connection("127.0.0.1", front.port)
        w.write(raw)
        assert (await Reader(r).answer()).status == b"HTTP/1.1 200 OK"
        holders.append(w)
    prefix = sid[: len("parity-")]
    cases: dict[str, tuple[str, bytes]] = {
        "valid": ("GET", request(path(sid), auth(token([sid])), at)),
        "valid by query": (
            "GET",
            request(path(sid, f"token={token([sid])}&last_event_id={NEWEST[sid]}")),
        ),
        "prefix claim": ("GET", request(path(sid), auth(token([prefix + "*"])), at)),
        "foreign prefix claim": ("GET", request(path(sid), auth(token(["other-*"])), at)),
        "expired": (
            "GET",
            request(path(sid), auth(token([sid], ttl_seconds=60, now=time.time() - 3600)), at),
        ),
        "another audience": ("GET", request(path(sid), auth(token([sid], audience="x")), at)),
        "another stream": ("GET", request(path(sid), auth(token(["elsewhere"])), at)),
        "no token": ("GET", request(path(sid), at)),
        "malformed resume point": (
            "GET",
            request(path(sid), auth(token([sid])), "last-event-id: z"),
        ),
        "foreign resume point": (
            "GET",
            request(path(sid), auth(token([sid])), "last-event-id: 2.00000000"),
        ),
        "resume point ahead": (
            "GET",
            request(path(sid), auth(token([sid])), f"last-event-id: 9{NEWEST[sid][1:]}"),
        ),
        "subject at its limit": ("GET", request(path(sid), auth(token([sid], sub=held_sub)), at)),
        "address at its limit": (
            "GET",
            request(path(sid), auth(token([sid])), at, address=held_addr),
        ),
        "allowed origin": (
            "GET",
            request(path(sid), auth(token([sid])), at, "origin: https://app.example"),
        ),
        "foreign origin": (
            "GET",
            request(path(sid), auth(token([sid])), at, "origin: https://evil.example"),
        ),
        "HEAD": ("HEAD", request(path(sid), auth(token([sid])), at, method="HEAD")),
        "HTTP/1.0": ("GET", request(path(sid), auth(token([sid])), at, version="1.0")),
        "a body on a GET": ("GET", request(path(sid), auth(token([sid])), at, body=b"hello")),
        "two Authorization headers": (
            "GET",
            request(path(sid), auth(token([sid])), auth(token(["elsewhere"])), at),
        ),
        "an empty Authorization, then a valid one": (
            "GET",
            request(path(sid), "authorization: ", auth(token([sid])), at),
        ),
        "a valid Authorization, then an empty one": (
            "GET",
            request(path(sid), auth(token([sid])), "authorization: ", at),
        ),
        "an unknown stream": ("GET", request(path("parity-none"), auth(token(["parity-none"])))),
        "a stream id out of its grammar": (
            "GET",
            request(path(sid + ":x"), auth(token([sid + ":x"]))),
        ),
        "valid, again after it": ("GET", request(path(sid), auth(token([sid])), at)),
    }
    answered: dict[str, int] = {}
    for name, (method, raw) in cases.items():
        open_before = front.app.state.slots.open
        before = front.fast.answered
        by_parser = await answers(front, raw, fast=True, method=method)
        answered[name] = front.fast.answered - before
        freed = functools.partial(_slots_at, front, open_before)
        await until(freed, f"{name}: its slot free")
        by_app = await answers(front, raw, fast=False, method=method)
        await until(freed, f"{name}: its slot free")
        assert by_parser.key() == by_app.key(), (name, by_parser, by_app)
    # The parser's path answered what it may answer (else this compared the app with itself).
    for name in ("valid", "prefix claim", "two Authorization headers", "valid, again after it"):
        assert answered[name] == 1, (name, answered)
    not_read = ("expired", "no token", "subject at its limit", "HEAD", "HTTP/1.0")
    for name in (*not_read, "a stream id out of its grammar"):
        assert answered[name] == 0, (name, answered)
    for w in holders:
        w.close()


def _slots_at(front: Front, count: int) -> bool:
    return bool(front.app.state.slots.open == count)


async def _pipelined(front: Front, *, fast: bool, case: str) -> list[Answer]:
    """An SSE request with a ``/healthz`` and a publish pipelined behind it, the stream
    ended (after the viewer is answered, or as the requests arrive): the answers, in
    the order they came, and whether the publish landed."""
    protocol = front.server.config.http_protocol_class
    saved = protocol.fast  # type: ignore[attr-defined]
    sid = "pipe-" + secrets.token_hex(4)
    target = "pipe-target-" + secrets.token_hex(4)
    mine = token([sid])
    viewer = f"authorization: Bearer {mine}"
    if case == "waiting":  # a stream not watched here: the viewer waits for its topic
        for i in range(3):
            await front.log.append(sid, [{"type": "data-n", "i": i}], kind="feed")
        sse = request(path(sid), viewer)
    else:
        other = f"x-forwarded-for: 192.0.2.{next(_seq) % 250 + 1}"
        await stream(front, 3, f"authorization: Bearer {token([sid])}", other, sid=sid)
        sse = request(path(sid), viewer, f"last-event-id: {NEWEST[sid]}")
    publish = b'{"type": "data-n", "i": 1}'
    behind = request("/healthz") + request(
        f"/v1/streams/{target}/events", "content-type: application/json", method="POST",
        body=publish,
    )  # fmt: skip
    protocol.fast = saved if fast else None  # type: ignore[attr-defined]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
        read = Reader(reader)
        if case == "ending":
            writer.write(sse)
            first = await read.answer()
            writer.write(behind)
            await front.log.append(sid, [{"type": "finish"}], kind="feed")
        else:
            writer.write(sse + behind)
            first = await read.answer()
            await front.log.append(sid, [{"type": "finish"}], kind="feed")
        rest = Answer(first.status, first.headers, first.body + (await read.answer_rest()))
        got = [rest, await read.answer(), await read.answer()]
        writer.write(request("/healthz"))
        got.append(await read.answer())  # and the connection serves on
        writer.close()
    finally:
        protocol.fast = saved  # type: ignore[attr-defined]
    assert read.buf == b"", read.buf  # nothing more: each answered once
    info = await front.log.info(target)
    assert info is not None and info.last_seq == 1, f"the pipelined publish was lost ({case})"
    return got


async def test_requests_pipelined_behind_a_viewer_are_answered_whole_once_in_order(
    front: Front,
) -> None:
    for case in ("waiting", "caught up", "ending"):
        answered = front.fast.answered
        by_parser = await _pipelined(front, fast=True, case=case)
        if case != "waiting":  # (one waiting goes to the app: a request follows it)
            assert front.fast.answered > answered, case
        by_app = await _pipelined(front, fast=False, case=case)
        statuses = [a.status.split(b" ")[1] for a in by_parser]
        assert statuses == [b"200", b"200", b"201", b"200"], (case, by_parser)
        assert b"[DONE]" in by_parser[0].body and by_parser[1].body == b'{"status":"ok"}'
        for a, b in zip(by_parser, by_app, strict=True):
            assert a.key() == b.key(), (case, a, b)
