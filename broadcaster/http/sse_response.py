"""The ASGI response that streams SSE bytes to one viewer.

Two things race: the stream of chunks, and the client going away (``http.disconnect``
from ``receive``). The first to finish cancels the other, so a departed viewer is
forgotten at once (its subscription's ``finally`` runs) rather than at the next write.
A viewer whose socket accepts nothing for ``send_timeout`` seconds is cut off: its
connection is closed and it resumes later with ``Last-Event-ID``.

When the server offers it (``server.py``'s protocol, under uvicorn with httptools), the
body gets a direct writer once the response has started: live frames then go from the
hub's reader straight to the socket, framed as HTTP chunks, with no task wakeup and no
ASGI ``send`` per frame. Everything else (the replay, pings, the end, a viewer that fell
behind) still goes through ``send``, which blocks on a full socket and so cuts off a
slow viewer. The writer refuses (returns False) once the socket's unsent buffer passes
``DIRECT_WRITE_LIMIT``: the frames then take the ``send`` path.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from broadcaster.fanout.subscription import Writer

log = logging.getLogger("broadcaster.sse")

Body = Callable[[Writer | None], AsyncIterator[bytes]]

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

DIRECT_WRITE_LIMIT = 256 * 1024
"""Unsent bytes a socket may hold before direct writes stop and ``send`` (which waits for
the socket, and cuts a viewer off after ``send_timeout``) takes over."""


class SlowViewer(Exception):
    pass


class SSEResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        body: Body,
        *,
        first: bytes,
        headers: Mapping[str, str],
        send_timeout: float,
        stream_id: str,
        on_cut_off: Callable[[], None] | None = None,
        chunks: bool = False,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        """``on_end`` is called once the response is over, however it ends (its slot in
        the connection counts, ``limits.Slot.release``)."""
        # Not Response.__init__: it would set a body and so a Content-Length.
        self.status_code = 200
        self.background = None
        self.raw_headers = list(_raw_headers(tuple(headers.items())))
        self._body = body
        self._chunks: AsyncIterator[bytes] | None = None
        self._first = first
        self._send_timeout = send_timeout
        self._stream_id = stream_id
        self._on_cut_off = on_cut_off
        self._direct_chunks = chunks
        """The body's writer takes HTTP/1.1 chunks (``DIRECT_WRITE``)."""
        self._on_end = on_end
        self._release: Callable[[], None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._serve(scope, receive, send)
        finally:
            if self._on_end is not None:
                self._on_end()

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        on_disconnect: Any = scope.get("extensions", {}).get(ON_DISCONNECT)
        if on_disconnect is not None:
            # The server calls us back when the client goes: no watcher task per viewer
            # (a task and its frames are most of an idle viewer's memory).
            with anyio.CancelScope() as cancel_scope:
                on_disconnect(cancel_scope.cancel)
                await self._run(scope, send)
            return
        async with anyio.create_task_group() as tg:

            async def watch_disconnect() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch_disconnect)
            try:
                await self._run(scope, send)
            finally:
                tg.cancel_scope.cancel()

    async def _run(self, scope: Scope, send: Send) -> None:
        try:
            await self._stream(scope, send)
        except SlowViewer:
            log.warning(
                "viewer accepted nothing for %.0fs; cut off",
                self._send_timeout,
                extra={"stream_id": self._stream_id},
            )
            if self._on_cut_off is not None:
                self._on_cut_off()
            # Returning with the response unfinished makes the server close the
            # connection, which is the point.
        finally:
            if self._release is not None:
                self._release()
            if self._chunks is not None:
                await _aclose(self._chunks)

    async def _stream(self, scope: Scope, send: Send) -> None:
        hold: Any = scope.get("extensions", {}).get(HOLD_WRITES)
        release = hold() if hold is not None else None
        if release is not None:
            # Released once this turn of the event loop is over (or the response ends):
            # whatever the response wrote by then goes out in one write.
            self._release = release
            asyncio.get_running_loop().call_soon(release)
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        direct: Any = scope.get("extensions", {}).get(DIRECT_WRITE)
        writer = None
        if direct is not None:
            writer = direct(chunks=True) if self._direct_chunks else direct()
        # What the body yields goes straight to the socket too while it takes it (no
        # ASGI message and no cancel scope per chunk); only a socket that holds more than
        # DIRECT_WRITE_LIMIT unsent, and an empty chunk (which waits for it to drain),
        # take ``send``, which waits and cuts a slow viewer off.
        plain = None if self._direct_chunks else writer
        if self._first:
            await self._send(send, self._first, plain)
        self._chunks = self._body(writer)
        async for chunk in self._chunks:
            await self._send(send, chunk, plain)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send(self, send: Send, chunk: bytes, writer: Writer | None = None) -> None:
        if chunk and writer is not None and writer(chunk):
            return
        with anyio.move_on_after(self._send_timeout) as scope:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if scope.cancelled_caught:
            raise SlowViewer


@functools.lru_cache(maxsize=64)
def _raw_headers(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...]:
    """The response head's headers as Starlette's ``init_headers`` makes them (with the
    content type), made once per set of headers rather than once per viewer."""
    made = SSEResponse.__new__(SSEResponse)
    made.status_code = 200
    made.init_headers(dict(headers))
    return tuple(made.raw_headers)


async def _aclose(it: AsyncIterator[bytes]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()
