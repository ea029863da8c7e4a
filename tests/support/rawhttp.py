"""HTTP/1.1 over a bare socket, for requests no well-behaved client will send: any bytes
in the request target and in header values (control characters, invalid UTF-8, raw
non-ASCII), and what the server answers, or whether it answered at all.

One request per connection (``Connection: close``). A ``200`` that streams (SSE) is not
read to its end: its status and headers are what such a test needs.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field


class NoAnswer(Exception):
    """The server closed the connection (or reset it) without a status line, or sent
    something that is not HTTP."""


@dataclass
class RawAnswer:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = True
    """Whether the body was read to its end (False: a stream, left after its first bytes)."""

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)


def request(
    host: str,
    port: int,
    method: str,
    target: bytes,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    timeout: float = 10.0,
    stream_peek: float = 0.3,
) -> RawAnswer:
    """Send one request exactly as given (``target`` and header values are not encoded
    nor checked) and read the answer. Raises ``NoAnswer`` when none came."""
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"host: " + host.encode()]
    lines += [k + b": " + v for k, v in headers or []]
    lines += [b"content-length: " + str(len(body)).encode(), b"connection: close"]
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(raw)
        except OSError as exc:  # refused while sending: it may still have answered
            if not _readable(sock):
                raise NoAnswer(f"sending failed: {exc}") from None
        return _read_answer(sock, method, stream_peek)


def _readable(sock: socket.socket) -> bool:
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except OSError:
        return False


def _read_answer(sock: socket.socket, method: str, stream_peek: float) -> RawAnswer:
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError) as exc:
            raise NoAnswer(f"{type(exc).__name__} before the status line ({buf[:80]!r})") from None
        if not chunk:
            raise NoAnswer(f"closed before the status line ({buf[:80]!r})")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise NoAnswer(f"not an HTTP status line: {status_line[:80]!r}")
    answer = RawAnswer(int(parts[1]))
    for line in header_lines:
        name, _, value = line.partition(b":")
        answer.headers.append(
            (name.strip().lower().decode("latin-1"), value.strip().decode("latin-1"))
        )
    if method == "HEAD" or answer.status in (204, 304) or 100 <= answer.status < 200:
        return answer
    if "text/event-stream" in (answer.header("content-type") or ""):
        # A stream: its first bytes, then leave.
        sock.settimeout(stream_peek)
        with contextlib.suppress(TimeoutError, OSError):
            rest += sock.recv(65536)
        answer.body, answer.complete = rest, False
        return answer
    length = answer.header("content-length")
    chunked = "chunked" in (answer.header("transfer-encoding") or "")
    try:
        while True:
            if length is not None and len(rest) >= int(length):
                break
            if chunked and rest.endswith(b"0\r\n\r\n"):
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    except (ConnectionResetError, TimeoutError) as exc:
        raise NoAnswer(f"{type(exc).__name__} in the body of a {answer.status}") from None
    if length is not None and len(rest) < int(length):
        raise NoAnswer(f"a {answer.status} cut off after {len(rest)} of {length} bytes")
    answer.body = _dechunk(rest) if chunked else rest
    return answer


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)
