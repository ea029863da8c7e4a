"""A connection's protocol until its first request's head is read (``HeadFirst``).

Most connections of a busy front-end are viewers that send one plain ``GET`` of a
stream's events and then only read. Making uvicorn's protocol for each (an httptools
parser, its callbacks, flow control) is a good part of what a connect costs, and none of
it is needed once the viewer is answered. So a connection starts with this small
protocol: a head that is plainly such a request (``plain_get``: a strict subset of
HTTP/1.1 that llhttp reads the same way) is asked about (``FastPath.open``) and, when it
may be answered at once, answered, its socket handed to its ``line.ViewerLine``.
Anything else (another request, a head outside the subset, a body or a request
pipelined behind it, a viewer that is to wait, a refusal) goes to the HTTP protocol,
which is given the same bytes and, when the fast path was asked already, its answer
(``Http.take``): it reads them as if it had been the connection's protocol from the
start.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol

import httptools

from broadcaster.transport.fast import FastPath, Opening
from broadcaster.transport.line import Server, answer

log = logging.getLogger("broadcaster.server")

NOT_ASKED = False
"""``Http.take``'s ``asked`` when the fast path was not asked about the request."""


class Http(Protocol):
    """What the head reader needs of the server's HTTP protocol class
    (``wire.DirectWriteProtocol``)."""

    fast: FastPath | None
    max_head: int
    lines: Server | None

    @classmethod
    def take(cls, transport: Any, received: bytes, asked: Opening | bool | None) -> None:
        """The HTTP protocol takes the connection over and reads ``received``; ``asked``:
        the fast path's answer to the request in it (None: the app's), or
        ``NOT_ASKED``."""
        ...

    @classmethod
    def socket_options(cls, transport: Any) -> None:
        """The connection's socket options, unless the listening socket has them."""
        ...


class HeadFirst:
    """A connection until its first request's head is read (the module's docstring)."""

    __slots__ = ("_http", "_received", "transport")

    def __init__(self, http: type[Http]) -> None:
        self._http = http
        self._received = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        http = self._http
        assert http.lines is not None
        http.lines.state.connections.add(self)
        http.socket_options(transport)

    def data_received(self, data: bytes) -> None:
        received = self._received + data if self._received else data
        end = received.find(b"\r\n\r\n")
        http = self._http
        if end < 0:
            if len(received) > http.max_head:
                self._to_http(received, NOT_ASKED)
            else:
                self._received = received
            return
        fast = http.fast
        asked: Opening | bool | None = NOT_ASKED
        if fast is not None and received.startswith(b"GET %s" % fast.prefix):
            plain = plain_get(received, end, http.max_head)
            try:
                asked = NOT_ASKED if plain is None else self._ask(fast, *plain)
            except Exception:  # a defect here must not cost the request: the app answers it
                log.exception("answering a viewer from the parser failed; the app answers it")
                asked = None
            if asked is True:
                return
        self._to_http(received, asked)

    def _ask(
        self, fast: FastPath, target: bytes, headers: list[tuple[bytes, bytes]]
    ) -> Opening | bool | None:
        """True: answered; else the fast path's answer, for the HTTP protocol to act on
        (a wait, or the app's), or ``NOT_ASKED`` (a target it does not read)."""
        try:
            url = httptools.parse_url(target)
        except httptools.HttpParserInvalidURLError:
            return NOT_ASKED
        try:
            peer = self.transport.get_extra_info("peername")
        except OSError:
            peer = None
        client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        opening = fast.open(url.path, url.query, headers, client, settle=True)
        if opening is None or opening.until is not None or opening.wait:
            return opening
        lines = self._http.lines
        assert lines is not None
        line = answer(self.transport, lines, opening)
        if line is None:
            return None
        line.take_over(self)
        return True

    def _to_http(self, received: bytes, asked: Opening | bool | None) -> None:
        self._received = b""
        assert self._http.lines is not None
        self._http.lines.state.connections.discard(self)
        self._http.take(self.transport, received, asked)

    def eof_received(self) -> bool | None:
        return None  # closes the connection

    def pause_writing(self) -> None:
        """Nothing is written before the request is read."""

    def resume_writing(self) -> None:
        """Nothing is written before the request is read."""

    def connection_lost(self, exc: Exception | None) -> None:
        if self._http.lines is not None:
            self._http.lines.state.connections.discard(self)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: no request under way, the connection closes."""
        self.transport.close()


_REQUEST_LINE = re.compile(rb"GET (/[A-Za-z0-9\-._~%!$&'()*+,;=:@/?]*) HTTP/1\.1")
"""A GET of an origin-form target of plain characters, HTTP/1.1."""
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""A header name (RFC 9110's token)."""
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
"""What no header value holds (a tab may)."""
_NOT_PLAIN = frozenset((b"content-length", b"transfer-encoding", b"upgrade", b"expect"))
"""Headers of a request that is not a plain GET: a body, an upgrade, a 100-continue."""
MAX_HEADERS = 256
"""As ``wire.MAX_HEADERS``: a head with more goes to the HTTP protocol, which refuses it."""


def plain_get(
    received: bytes, end: int, max_head: int
) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    """The target and headers of ``received`` when it is one plain GET whose head ends at
    ``end`` (its blank line) and nothing follows: HTTP/1.1, keep-alive, no body, no
    upgrade, CRLF line ends, no folded or odd header, within the head's limits; the
    headers as uvicorn's protocol gives them (names lowercased, values without their
    leading whitespace, as llhttp reads them). None: anything else."""
    if end + 4 != len(received) or end + 4 > max_head:
        return None
    lines = received[:end].split(b"\r\n")
    matched = _REQUEST_LINE.fullmatch(lines[0])
    if matched is None or len(lines) > MAX_HEADERS + 1:
        return None
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or _NAME.fullmatch(name) is None or _CONTROL.search(value) is not None:
            return None
        name = name.lower()
        value = value.lstrip(b" \t")
        if name in _NOT_PLAIN or (name == b"connection" and value.lower() != b"keep-alive"):
            return None
        headers.append((name, value))
    return matched[1], headers
