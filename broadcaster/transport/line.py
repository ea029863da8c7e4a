"""A connection whose response is an open SSE viewer answered from the parser
(``ViewerLine``): the socket is handed to it from the HTTP protocol (``set_protocol``)
once the viewer's head is written, so an open viewer keeps no parser, request cycle, flow
control or callbacks, only what its one chunked response needs. It is the viewer's
``seam.Connection``, its direct writer (it is callable) and its ``send``. When the
response ends on a keep-alive connection, the socket goes back to a new HTTP protocol
(``back``), with what the client sent meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from broadcaster.transport.cycles import ENDED, OPEN, WRITTEN
from broadcaster.transport.fast import Opening
from broadcaster.transport.seam import DIRECT_WRITE_LIMIT

END = b"0\r\n\r\n"
"""A chunked body's end."""


class LastChunk:
    """SSE bytes as one HTTP/1.1 chunk (then ``after``: the body's end, for the last). The
    fan-out writes the same ``bytes`` object to every caught-up viewer of a stream in a
    row, so the last one is kept: one copy per message, not one per viewer (and no copy
    at all when the socket takes it whole)."""

    __slots__ = ("_after", "_chunk", "_data")

    def __init__(self, after: bytes = b"") -> None:
        self._data = b""
        self._chunk = b""
        self._after = after

    def of(self, data: bytes) -> bytes:
        if data is not self._data:
            self._data = data
            self._chunk = b"%x\r\n%b\r\n%b" % (len(data), data, self._after)
        return self._chunk


class Server:
    """What the lines of one server share: uvicorn's state of it (its connections, tasks
    and default headers), the most bytes a line keeps of what the client sends meanwhile
    (``limit``), and how a connection becomes an HTTP one again (``back``)."""

    __slots__ = ("back", "limit", "state")

    def __init__(self, state: Any, limit: int, back: Callable[[Any, bytes], None]) -> None:
        self.state = state
        self.limit = limit
        self.back = back
        """``back(transport, received)``: an HTTP protocol takes the connection over."""


def answer(line: ViewerLine, opening: Opening) -> bool:
    """The viewer joins (``opening.start``, given ``line`` as its connection, writer and
    ``send``), and its response's head and first chunk are written in one write; False
    when it may no longer be answered so (the app answers it)."""
    line._ended = OPEN
    answered = opening.start(line.send, line, line)
    if answered is None:
        return False
    first, line.on_lost = answered
    head = head_of(line._server.state.default_headers, opening.head)
    line.transport.write(b"%s%x\r\n%s\r\n" % (head, len(first), first))
    return True


_heads: list[Any] = [None, b"", b""]


def head_of(defaults: list[tuple[bytes, bytes]], headers: bytes) -> bytes:
    """The response's head: its status line, uvicorn's default headers (``server``,
    ``date``), the viewer's ``headers`` and a chunked body's; made again only when
    uvicorn makes a new list of defaults (once a second, for the date) or the headers
    are others."""
    if _heads[0] is not defaults or _heads[1] is not headers:
        lines = b"".join(b"%s: %s\r\n" % pair for pair in defaults)
        made = b"%s%s%stransfer-encoding: chunked\r\n\r\n" % (STATUS_LINE[200], lines, headers)
        _heads[:] = [defaults, headers, made]
    head: bytes = _heads[2]  # (no ``cast``: a call, on every connect)
    return head


class ViewerLine:
    """One open viewer's connection, from its head on: direct writes (``__call__``), the
    ASGI ``send`` of its chunked body (which waits for the socket), its end, its tasks,
    and the client's going (``on_lost``). Bytes the client sends meanwhile (a request
    pipelined behind the viewer's) are kept, bounded, for the HTTP protocol that takes
    over at the end; reading pauses past the server's ``limit``."""

    __slots__ = (
        "_drained",
        "_ended",
        "_keep_alive",
        "_lost",
        "_paused",
        "_received",
        "_server",
        "on_lost",
        "transport",
    )

    chunks = LastChunk()  # shared by the connections of the process (one event loop)
    last_chunks = LastChunk(END)  # a stream's terminal event, and the body's end

    def __init__(self, transport: Any, server: Server) -> None:
        self.transport = transport
        self._server = server
        self.on_lost: Callable[[], None] | None = None
        self._received = b""
        self._drained: asyncio.Future[None] | None = None
        self._ended = OPEN
        self._keep_alive = True
        self._lost = False
        self._paused = False

    def take_over(self, old: Any) -> None:
        """The connection is this line's from now on (``old``: the protocol it was)."""
        self.transport.set_protocol(self)
        connections = self._server.state.connections
        connections.discard(old)
        connections.add(self)

    # --- asyncio.Protocol (made by the HTTP protocol, not by the server: no
    # ``connection_made``) ---

    def data_received(self, data: bytes) -> None:
        self._received += data
        if len(self._received) > self._server.limit:
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        return None  # closes the connection: the client is gone

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.state.connections.discard(self)
        self._lost = True
        self._wake()
        callback, self.on_lost = self.on_lost, None
        if callback is not None:
            callback()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: the connection closes once the response ends (the
        hub's drain ends it)."""
        if self._ended == ENDED:
            self.transport.close()
        else:
            self._keep_alive = False

    # --- seam.Connection and Writer ---

    def __call__(self, data: bytes) -> bool:
        """SSE bytes as one chunk, straight to the socket; False once it holds
        ``DIRECT_WRITE_LIMIT`` unsent (``send`` then waits for it)."""
        transport = self.transport
        if self._ended or transport.is_closing():
            return False
        if transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT:
            return False
        transport.write(self.chunks.of(data))
        return True

    def writer(self, chunks: bool = False) -> Callable[[bytes], bool] | None:
        return None if chunks or self._ended else self

    def hold_writes(self) -> Callable[[], None] | None:
        return None  # the response has started

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        if self._lost:
            callback()
        else:
            self.on_lost = callback

    def detach(self, on_lost: Callable[[], None]) -> bool:
        return False  # detached from the start

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task of the response: the server's, awaited at its shutdown."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        tasks = self._server.state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    def close(self) -> None:
        self.transport.close()

    def finish(self, last: bytes) -> bool:
        """The response's end now (``seam.Connection.finish``): ``last`` and the body's
        end in one write; what follows it (the connection's next request) waits for a
        call without ``last``. False when the socket holds too much unsent."""
        if self._lost or self._ended == ENDED:
            return False
        transport = self.transport
        if self._ended == OPEN:
            if transport.is_closing() or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT:
                return False
            transport.write(self.last_chunks.of(last) if last else END)
            self._ended = WRITTEN
            if last:
                return True
        self._after_end()
        return True

    async def send(self, message: dict[str, Any]) -> None:
        """The response's ASGI ``send`` (``http.response.body`` only: it has started):
        waits while the socket is over its high-water mark."""
        while self._paused and not self._lost:
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            await self._drained
        if self._lost or self._ended:
            return
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if body:
            self.transport.write(b"%x\r\n%b\r\n%b" % (len(body), body, b"" if more else END))
        elif not more:
            self.transport.write(END)
        if not more:
            self._ended = WRITTEN
            self._after_end()

    def _after_end(self) -> None:
        """The response is over: the connection closes, or an HTTP protocol takes it
        over for the client's next request (with what it sent meanwhile), once the
        fan-out or the task that ended it is done."""
        self._ended = ENDED
        if not self._keep_alive:
            self.transport.close()
        elif not self.transport.is_closing():
            asyncio.get_running_loop().call_soon(self._back)

    def _back(self) -> None:
        transport = self.transport
        if self._lost or transport.is_closing():
            return
        if not self._keep_alive:
            transport.close()  # shut down meanwhile
            return
        received, self._received = self._received, b""
        if len(received) > self._server.limit:
            transport.resume_reading()
        self._server.state.connections.discard(self)
        self._server.back(transport, received)

    def _wake(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)
