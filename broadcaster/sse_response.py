"""The ASGI response that streams SSE bytes to one viewer.

Two things race: the stream of chunks, and the client going away (``http.disconnect``
from ``receive``). The first to finish cancels the other, so a departed viewer is
forgotten at once (its subscription's ``finally`` runs) rather than at the next write.
A viewer whose socket accepts nothing for ``send_timeout`` seconds is cut off: its
connection is closed and it resumes later with ``Last-Event-ID``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

log = logging.getLogger("broadcaster.sse")


class SlowViewer(Exception):
    pass


class SSEResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        body: AsyncIterator[bytes],
        *,
        first: bytes,
        headers: Mapping[str, str],
        send_timeout: float,
        stream_id: str,
        on_cut_off: Callable[[], None] | None = None,
    ) -> None:
        # Not Response.__init__: it would set a body and so a Content-Length.
        self.status_code = 200
        self.background = None
        self.init_headers(headers)
        self._chunks = body
        self._first = first
        self._send_timeout = send_timeout
        self._stream_id = stream_id
        self._on_cut_off = on_cut_off

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:

            async def watch_disconnect() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch_disconnect)
            try:
                await self._stream(send)
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
                tg.cancel_scope.cancel()
                await _aclose(self._chunks)

    async def _stream(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await self._send(send, self._first)
        async for chunk in self._chunks:
            await self._send(send, chunk)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send(self, send: Send, chunk: bytes) -> None:
        with anyio.move_on_after(self._send_timeout) as scope:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if scope.cancelled_caught:
            raise SlowViewer


async def _aclose(it: AsyncIterator[bytes]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()
