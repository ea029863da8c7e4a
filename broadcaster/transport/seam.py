"""The one interface between a viewer's response and the connection it is sent on
(``Connection``), and the one ASGI scope extension through which a response of the app
reaches it (``CONNECTION``). Knows no uvicorn: ``wire`` implements it; the SSE response
(``viewers/response.py``), the fast path (``viewers/fastpath.py``) and, through the
functions it is handed, the fan-out (``fanout/subscription.py``'s ``Holder.finish`` and
``Writer``) use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from broadcaster.core.sse import Writer


class Connection(Protocol):
    """A viewer's connection: what its response writes to, how the response ends, the
    task it may need again, and its close; offered to a response of the app by the one
    scope extension ``CONNECTION`` (``offered``), and to a viewer answered from the parser
    (``fast.Opening.start``). A caught-up viewer holds no task: its response goes on
    without one once detached (``detach``)."""

    def writer(self, chunks: bool = False) -> Writer | None:
        """Writes SSE bytes as one HTTP/1.1 chunk each (``chunks``: whole chunks) straight
        to the socket, False once it holds ``DIRECT_WRITE_LIMIT`` unsent; None when the
        response has not started or cannot take direct writes."""
        ...

    def hold_writes(self) -> Callable[[], None] | None:
        """Before the response starts: keep what it writes in memory until the function
        returned is called (None: it cannot). A viewer's head, ``retry:`` and first
        events, written in one turn of the event loop, then reach its socket as one
        ``send`` instead of three."""
        ...

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        """``callback()`` once the client has gone (at once if it already has): no task
        per response watches ``receive``."""
        ...

    def detach(self, on_lost: Callable[[], None]) -> bool:
        """Once the response has started: let it go on without its task, ``on_lost``
        called when the client goes (instead of ``on_disconnect``'s callback). False when
        it cannot; else the app may return with the response unfinished and the
        connection stays open."""
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


CONNECTION = "broadcaster.connection"
"""The ASGI scope extension: the request's ``Connection``, bound to its own response
(a request pipelined behind it has its own). Absent under another ASGI server: every
frame then takes ``send``."""


def offered(scope: Mapping[str, Any]) -> Connection | None:
    """The ``Connection`` the server offers the response of the request of ``scope``."""
    found: Connection | None = scope.get("extensions", {}).get(CONNECTION)
    return found


DIRECT_WRITE_LIMIT = 256 * 1024
"""Unsent bytes a socket may hold before direct writes stop and ``send`` (which waits for
the socket, and cuts a viewer off after ``send_timeout``) takes over."""
