"""The one interface between a viewer's response and the connection it is sent on
(``Connection``), and the ASGI scope extensions through which a response of the app
reaches it. Knows no uvicorn: ``wire`` and ``cycles`` implement it; the SSE response
(``http/sse_response.py``), the fast path (``http/fast_viewer.py``) and, through the
functions it is handed, the fan-out (``fanout/subscription.py``'s ``direct_end`` and
``Writer``) use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from broadcaster.core.sse import Writer


class Connection(Protocol):
    """A viewer's connection, offered to a response that goes on without its task (a
    caught-up viewer holds no task): what it writes to, how its response ends, the task
    it may need again, and its close. That the client went is heard through the
    callback given to ``DETACH`` (or ``ON_DISCONNECT``)."""

    def writer(self, chunks: bool = False) -> Writer | None:
        """Writes SSE bytes as one HTTP/1.1 chunk each (``chunks``: whole chunks) straight
        to the socket, False once it holds ``DIRECT_WRITE_LIMIT`` unsent; None when the
        response cannot take direct writes."""
        ...

    def finish(self, last: bytes) -> bool:
        """Ends the response now: ``last`` (SSE bytes, maybe none) as its last chunk and
        the chunked body's end in one write; False when the socket holds too much unsent
        (``send`` then ends it, waiting). With ``last``, what follows the response's end
        (the connection's next request) waits for a second call, without."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task the server owns (and awaits at its shutdown) for the response."""
        ...

    def close(self) -> None:
        """Closes the connection (a slow viewer cut off)."""
        ...


DIRECT_WRITE = "broadcaster.direct_write"
"""The ASGI scope extension: a callable that, once the response has started, returns a
``Writer`` for its body, or None when the connection cannot take direct writes. Called
with ``chunks=True``, the writer takes whole HTTP/1.1 chunks instead of SSE bytes (a body
that makes each write for one connection alone frames it in the same step)."""

ON_DISCONNECT = "broadcaster.on_disconnect"
"""The ASGI scope extension: a callable taking a callback that the server calls once
the client has gone (at once if it already has)."""

HOLD_WRITES = "broadcaster.hold_writes"
"""The ASGI scope extension: a callable that, before the response starts, makes the
connection keep what the response writes in memory until the function it returns is
called (None: it cannot). A viewer's head, ``retry:`` and first events, written in one
turn of the event loop, then reach its socket in one ``send`` instead of three."""

DETACH = "broadcaster.detach"
"""The ASGI scope extension: a callable that, once the response has started, lets it go
on without its task. Called with the function to call when the client goes (instead of
``ON_DISCONNECT``'s), it returns the ``Connection``, or None when it cannot: the app may
then return with the response unfinished and the connection stays open."""

DIRECT_WRITE_LIMIT = 256 * 1024
"""Unsent bytes a socket may hold before direct writes stop and ``send`` (which waits for
the socket, and cuts a viewer off after ``send_timeout``) takes over."""
