"""What the connection asks before it gives a request to the app (``FastPath``): whether
a viewer may be answered from the parser's callback, with no ASGI scope and no task, and
how (``Opening``). ``viewers/fastpath.py`` answers; ``wire`` asks, once a whole request
with nothing pipelined behind it is parsed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, Protocol

from broadcaster.core.sse import Writer
from broadcaster.transport.seam import Connection

Send = Callable[[Any], Awaitable[None]]
"""An ASGI ``send``: the response's cycle's, for what direct writes cannot do."""

Start = Callable[[Send, Writer, Connection], tuple[bytes, Callable[[], None]] | None]


class Opening(NamedTuple):
    """A viewer to answer without the app: the SSE response's header lines, and, once
    ``wait`` seconds are over (its turn at the admission rate: 0, now), ``start``; or,
    with ``until``, the request is to be asked about again once its stream's topic has
    settled (``until(then)`` calls ``then`` then, or returns False: not settling)."""

    head: bytes
    wait: float
    start: Start
    """Called by the connection once it made the response's cycle, with the cycle's
    ``send``, the connection's direct writer and the ``Connection``: the viewer takes its
    slot and joins, and its first chunk (``retry:`` and what the topic holds) comes back
    with the function to call when the client goes. None after a wait when the request
    may no longer be answered so (an ended stream, a limit reached, a drain): the app
    answers it then, from the start."""
    until: Callable[[Callable[[], None]], bool] | None = None


class FastPath(Protocol):
    """Asked about each keep-alive HTTP/1.1 GET whose target starts with ``prefix``."""

    prefix: bytes

    def open(
        self,
        path: bytes,
        query: bytes | None,
        headers: Sequence[tuple[bytes, bytes]],
        client: tuple[str, int] | None,
        *,
        settle: bool = True,
    ) -> Opening | None:
        """How to answer the request without the app, or None: the app answers it."""
        ...
