"""A connection's protocol until its first request's head is read (``HeadFirst``).

Most connections of a busy front-end are viewers that send one plain ``GET`` of a
stream's events and then only read. Making uvicorn's protocol for each (an httptools
parser, its callbacks, flow control) is a good part of what a connect costs, and none of
it is needed once the viewer is answered. So a connection starts with this small
protocol: a head that is plainly such a request (``plain_get``: a strict subset of
HTTP/1.1 that llhttp reads the same way) is asked about (``FastPath.open``) and, when it
may be answered at once, answered, and the protocol is its ``line.ViewerLine`` from then
on (it is one): the socket is not handed on.
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

from broadcaster.transport.fast import FastPath, Opening
from broadcaster.transport.line import Server, ViewerLine, answer

log = logging.getLogger("broadcaster.server")

NOT_ASKED = False
"""``Http.take``'s ``asked`` when the fast path was not asked about the request."""


class Http(Protocol):
    """What the head reader needs of the server's HTTP protocol class
    (``wire.DirectWriteProtocol``)."""

    fast: FastPath | None
    max_head: int
    lines: Server | None
    options_per_connection: bool

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


HEAD = -1
"""``ViewerLine._ended`` of a ``HeadFirst`` whose request's head is being read."""


class HeadFirst(ViewerLine):
    """A connection until its first request's head is read (the module's docstring); a
    viewer answered so keeps it as its ``ViewerLine``: the socket is not handed on (no
    second protocol made, and uvloop stops and starts reading for every hand-over)."""

    __slots__ = ("_http",)

    def __init__(self, http: type[Http]) -> None:
        lines = http.lines
        assert lines is not None  # made by a server with the fast path: with its lines
        ViewerLine.__init__(self, None, lines)
        self._http = http
        self._ended = HEAD  # ``line.answer`` opens it

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._server.state.connections.add(self)
        http = self._http
        if http.options_per_connection:
            http.socket_options(transport)

    def data_received(self, data: bytes) -> None:
        if self._ended != HEAD:
            ViewerLine.data_received(self, data)  # answered: the line's (uvloop keeps this)
            return
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
        get = received.startswith(b"GET ")
        if fast is not None and get and received.startswith(fast.prefix, 4):
            plain = plain_get(received, end, http.max_head)
            try:
                asked = NOT_ASKED if plain is None else self._ask(fast, *plain)
            except Exception:  # a defect here must not cost the request: the app answers it
                log.exception("answering a viewer from the parser failed; the app answers it")
                asked = None
            if asked is True:
                return
        self._to_http(received, asked)

    def _ask(self, fast: FastPath, target: bytes, headers: Headers) -> Opening | bool | None:
        """True: answered; else the fast path's answer, for the HTTP protocol to act on
        (a wait, or the app's). ``target`` is of ``plain_get``'s characters (no ``#``):
        its path and query are either side of its first ``?``, as llhttp splits it."""
        path, _, query = target.partition(b"?")
        try:
            peer = self.transport.get_extra_info("peername")
        except OSError:
            peer = None
        client = peer if isinstance(peer, tuple) else None  # uvloop's: (host, port, ...)
        opening = fast.open(path, query, headers, client, settle=True)
        if opening is None or opening.until is not None or opening.wait:
            return opening
        self._received = b""
        if answer(self, opening):
            return True
        self._ended = HEAD
        return None

    def _to_http(self, received: bytes, asked: Opening | bool | None) -> None:
        self._received = b""
        self._server.state.connections.discard(self)
        self._http.take(self.transport, received, asked)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: before an answer, no request is under way and the
        connection closes; after, the line's."""
        if self._ended == HEAD:
            self.transport.close()
        else:
            ViewerLine.shutdown(self)


_REQUEST_LINE = re.compile(rb"GET (/[A-Za-z0-9\-._~%!$&'()*+,;=:@/?]*) HTTP/1\.1")
"""A GET of an origin-form target of plain characters, HTTP/1.1."""
_HEADER = re.compile(
    rb"(?<=\n)([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*)\r\n"
)
"""A header line: its name (RFC 9110's token), a colon, its value (less its leading
whitespace; no control but a tab), CRLF; only at a line's start."""
_MAYBE_NOT_PLAIN = re.compile(rb"\n(?:content-length|transfer-encoding|upgrade|expect|connection):")
"""In a head lowercased: it may name one of ``_NOT_PLAIN`` (or a ``connection``), to look
at closer. (A lowercased copy, so that the search needs no ``IGNORECASE``, and no
lookbehind: the engine looks for each newline, not at every position.)"""
_NOT_PLAIN = frozenset((b"content-length", b"transfer-encoding", b"upgrade", b"expect"))
"""Headers of a request that is not a plain GET: a body, an upgrade, a 100-continue."""
MAX_HEADERS = 256
"""As ``wire.MAX_HEADERS``: a head with more goes to the HTTP protocol, which refuses it."""


Headers = tuple[tuple[bytes, bytes], ...]
"""A head's headers as ``plain_get`` reads them: a tuple, as one reading may be shared."""

_last: list[tuple[bytes, int, tuple[bytes, Headers] | None]] = [(b"", 0, None)]
"""The last head ``plain_get`` read, the limit it was read with, and what it read: one
tuple, replaced whole, so that a reading is never another head's."""


def plain_get(received: bytes, end: int, max_head: int) -> tuple[bytes, Headers] | None:
    """The target and headers of ``received`` when it is one plain GET whose head ends at
    ``end`` (its blank line) and nothing follows: HTTP/1.1, keep-alive, no body, no
    upgrade, CRLF line ends, no folded or odd header, within the head's limits; the
    headers as uvicorn's protocol gives them (names lowercased, values without their
    leading whitespace, as llhttp reads them). None: anything else.

    A head like the last one is not read again: a herd's viewers of one stream, sent by
    one program, send the very same bytes one after another, and comparing them costs a
    fraction of reading them (one that differs mostly differs in length)."""
    last = _last[0]
    if received == last[0] and max_head == last[1]:
        return last[2]
    read = _plain_get(received, end, max_head)
    _last[0] = (received, max_head, read)
    return read


def _plain_get(received: bytes, end: int, max_head: int) -> tuple[bytes, Headers] | None:
    if end + 4 != len(received) or end + 4 > max_head:
        return None
    first = received.find(b"\r\n")
    matched = _REQUEST_LINE.fullmatch(received, 0, first)
    if matched is None:
        return None
    # Every line a header: as many matched as there are line ends (a line that is not
    # one matches nowhere, and a bare LF is one more line end).
    pairs = _HEADER.findall(received, first + 2, end + 2)
    if len(pairs) != received.count(b"\n", first + 2, end + 2) or len(pairs) > MAX_HEADERS:
        return None
    headers = tuple([(name.lower(), value) for name, value in pairs])
    if _MAYBE_NOT_PLAIN.search(received.lower(), first, end) is not None:
        for name, value in headers:
            if name in _NOT_PLAIN or (name == b"connection" and value.lower() != b"keep-alive"):
                return None
    return matched[1], headers
