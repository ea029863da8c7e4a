"""A lingering close, as nginx makes one: an answer given before the request's body was
read (a refusal: 401, 413, 431) reaches the client, instead of a reset.

Closing a socket whose receive queue holds unread bytes makes the kernel send a reset,
and a client that is still sending its body gets that reset in place of the answer it
has not read yet. So the answer is written, the write side shut (the client reads the
answer, then its end), and what the client still sends is read and dropped, never
parsed, until it stops (its own end), or for at most ``LINGER_SECONDS`` or
``LINGER_BYTES``; then the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

LINGER_SECONDS = 10.0
"""The longest a refused request's body is read and dropped before the connection is
closed anyway (nginx's ``lingering_time`` is 30 s)."""
LINGER_BYTES = 64 * 1024 * 1024
"""The most bytes read and dropped: a client that sends more gets the reset."""


class Lingering:
    """One connection's lingering close: its write side shut, what arrives dropped."""

    __slots__ = ("_left", "_timer", "_transport")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._left = LINGER_BYTES
        if transport.can_write_eof():
            transport.write_eof()  # after what is written: the answer, then the end
        self._timer = loop.call_later(LINGER_SECONDS, transport.close)

    def drop(self, data: bytes) -> None:
        """Bytes the client sent after the answer: counted, never parsed."""
        self._left -= len(data)
        if self._left < 0:
            self.close()

    def close(self) -> None:
        self._timer.cancel()
        self._transport.close()


class ClosesLingering:
    """The transport a request with a body answers through (its cycle's): its ``close``
    is the connection's ``close_after_answer``, which lingers while the body is unread;
    anything else is the real transport's."""

    __slots__ = ("_close", "real")

    def __init__(self, real: Any, close: Any) -> None:
        self.real = real
        self._close = close

    def write(self, data: bytes) -> None:
        self.real.write(data)

    def close(self) -> None:
        self._close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)
