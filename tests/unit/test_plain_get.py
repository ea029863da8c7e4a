"""``head.plain_get``: the heads the connection's first protocol reads itself are a strict
subset of HTTP/1.1 that it reads as uvicorn's protocol over httptools (llhttp) does (the
same target, the same headers); every other head is left to that protocol."""

from __future__ import annotations

import httptools
import pytest

from broadcaster.transport.head import MAX_HEADERS, plain_get

pytestmark = pytest.mark.unit

TARGET = b"/v1/streams/s-1/events"


class Parsed:
    """What uvicorn's httptools protocol is given of a head (names lowercased)."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))


def by_llhttp(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bool]:
    parsed = Parsed()
    parser = httptools.HttpRequestParser(parsed)
    parser.feed_data(head)
    return parsed.url, parsed.headers, parser.should_keep_alive()


def read(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    return plain_get(head, head.find(b"\r\n\r\n"), 64 * 1024)


PLAIN = [
    b"GET %s HTTP/1.1\r\nhost: t\r\n\r\n" % TARGET,
    b"GET %s?last_event_id=3.ab&presence=1 HTTP/1.1\r\nHost: t\r\n\r\n" % TARGET,
    b"GET %s HTTP/1.1\r\nLast-Event-ID:   3.abcd \t \r\nX-Empty:\r\nY: a  b\r\n\r\n" % TARGET,
    b"GET %s HTTP/1.1\r\nAuthorization: Bearer a.b.c\r\nConnection: Keep-Alive\r\n\r\n" % TARGET,
    b"GET %s HTTP/1.1\r\nX-Forwarded-For: 192.0.2.1\r\nx-forwarded-for: 192.0.2.2\r\n\r\n" % TARGET,
    b"GET %s HTTP/1.1\r\nv: caf\xc3\xa9\tok\r\n\r\n" % TARGET,
]


@pytest.mark.parametrize("head", PLAIN)
def test_a_plain_get_is_read_as_llhttp_reads_it(head: bytes) -> None:
    url, headers, keep_alive = by_llhttp(head)
    assert keep_alive
    assert read(head) == (url, tuple(headers))


NOT_PLAIN = {
    "http/1.0": b"GET %s HTTP/1.0\r\nhost: t\r\n\r\n" % TARGET,
    "post": b"POST %s HTTP/1.1\r\nhost: t\r\n\r\n" % TARGET,
    "a body": b"GET %s HTTP/1.1\r\ncontent-length: 0\r\n\r\n" % TARGET,
    "chunked": b"GET %s HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n" % TARGET,
    "close": b"GET %s HTTP/1.1\r\nconnection: close\r\n\r\n" % TARGET,
    "upgrade": b"GET %s HTTP/1.1\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n" % TARGET,
    "expect": b"GET %s HTTP/1.1\r\nexpect: 100-continue\r\n\r\n" % TARGET,
    "folded": b"GET %s HTTP/1.1\r\nx: a\r\n b\r\n\r\n" % TARGET,
    "bare lf": b"GET %s HTTP/1.1\r\nx: a\nhost: t\r\n\r\n" % TARGET,
    "space before colon": b"GET %s HTTP/1.1\r\nhost : t\r\n\r\n" % TARGET,
    "space in a name": b"GET %s HTTP/1.1\r\nhost: t\r\nx y: z\r\n\r\n" % TARGET,
    "bare cr": b"GET %s HTTP/1.1\r\nx: a\rhost: t\r\n\r\n" % TARGET,
    "a body, named otherwise": b"GET %s HTTP/1.1\r\nhost: t\r\nContent-Length: 0\r\n\r\n" % TARGET,
    "no colon": b"GET %s HTTP/1.1\r\nhost\r\n\r\n" % TARGET,
    "control": b"GET %s HTTP/1.1\r\nx: a\x01b\r\n\r\n" % TARGET,
    "absolute form": b"GET http://t%s HTTP/1.1\r\nhost: t\r\n\r\n" % TARGET,
    "fragment": b"GET %s#x HTTP/1.1\r\nhost: t\r\n\r\n" % TARGET,
    "two spaces": b"GET  %s HTTP/1.1\r\nhost: t\r\n\r\n" % TARGET,
    "leading crlf": b"\r\nGET %s HTTP/1.1\r\nhost: t\r\n\r\n" % TARGET,
    "pipelined": b"GET %s HTTP/1.1\r\nhost: t\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n" % TARGET,
    "many headers": b"GET %s HTTP/1.1\r\n%s\r\n"
    % (TARGET, b"".join(b"x%d: y\r\n" % i for i in range(MAX_HEADERS + 1))),
}


@pytest.mark.parametrize("case", sorted(NOT_PLAIN))
def test_any_other_head_is_left_to_the_http_protocol(case: str) -> None:
    assert read(NOT_PLAIN[case]) is None


def test_a_head_over_the_limit_is_left_to_the_http_protocol() -> None:
    head = b"GET %s HTTP/1.1\r\nx: %s\r\n\r\n" % (TARGET, b"y" * 100)
    assert plain_get(head, head.find(b"\r\n\r\n"), len(head)) is not None
    assert plain_get(head, head.find(b"\r\n\r\n"), len(head) - 1) is None


def test_a_head_like_the_last_is_read_once() -> None:
    """A herd's heads alike in a row share one reading; any other head is read anew."""
    first = read(PLAIN[0])
    assert first is not None
    assert read(bytes(bytearray(PLAIN[0]))) is first  # equal bytes, another object
    assert read(PLAIN[1]) == (by_llhttp(PLAIN[1])[0], tuple(by_llhttp(PLAIN[1])[1]))
    assert read(NOT_PLAIN["close"]) is None
    assert read(PLAIN[0]) == first
