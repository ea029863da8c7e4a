"""The ASGI response that streams SSE bytes to one viewer.

The stream of chunks races the client going away (``http.disconnect``): the first to
finish cancels the other, so a departed viewer is forgotten at once. A viewer whose
socket takes nothing for ``send_timeout`` seconds is cut off (it resumes with
``Last-Event-ID``). Under the project's transport, live frames go straight from the
hub to the socket (a direct writer, refused past ``DIRECT_WRITE_LIMIT``), the rest
through ``send``; a caught-up viewer of one stream is handed over (``detach``) and its
task ends. ARCHITECTURE.md, "The viewer's path".
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from broadcaster.core.sse import Writer
from broadcaster.fanout.subscription import Subscription
from broadcaster.fanout.viewer import Detach
from broadcaster.transport.seam import Connection, offered
from broadcaster.viewers.expiry import Held

log = logging.getLogger("broadcaster.sse")

Body = Callable[[Writer | None], AsyncIterator[bytes]]

Resume = Callable[[Subscription, Writer, Detach | None], AsyncIterator[bytes]]
"""The body again, for a viewer that was handed over and woke (``Hub.resume``)."""


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
        resume: Resume | None = None,
        leave: Callable[[Subscription], None] | None = None,
        token: Held | None = None,
    ) -> None:
        """``on_end`` is called once the response is over, however it ends (its slot in
        the connection counts, ``slots.Slot.release``). With ``resume`` and ``leave``
        (``Hub.resume``, ``Hub.leave``), a body that offers its caught-up viewer to
        ``detach`` hands it to a ``Handed`` and the response's task ends: the viewer then
        costs its subscription and a ``Handed``, not a task and its frames. With
        ``token``, the response ends when its token does (``end_token``)."""
        # Not Response.__init__: it would set a body and so a Content-Length.
        self.status_code = 200
        self.background = None
        self.raw_headers = list(raw_headers(tuple(headers.items())))
        self._body = body
        self._chunks: AsyncIterator[bytes] | None = None
        self._first = first
        self._send_timeout = send_timeout
        self._stream_id = stream_id
        self._on_cut_off = on_cut_off
        self._direct_chunks = chunks
        """The body's writer takes HTTP/1.1 chunks (``Connection.writer``)."""
        self._on_end = on_end
        self._release: Callable[[], None] | None = None
        self._resume = resume
        self._leave = leave
        self._handed = False
        self._conn: Connection | None = None
        self._send_fn: Send | None = None
        self._writer: Writer | None = None
        self._token = token
        self._scope: anyio.CancelScope | None = None
        self._started = False
        self._last_words: bytes | None = None
        """Set when its token ended it (``end_token``): what it says before its end."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = self._token
        if token is not None:
            token.expiries.watch(token.entry, self)
        try:
            await self._serve(scope, receive, send)
            if self._last_words is not None:
                await self._say_last(send, self._last_words)
        finally:
            if token is not None and not self._handed:
                token.expiries.forget(token.entry)
            if self._on_end is not None and not self._handed:
                self._on_end()

    def end_token(self, reason: str) -> None:
        """Its token ended (``expiry.Expiries``): the body stops, and the response ends
        with what its protocol says of it (``Held.frame``)."""
        if self._token is None or self._handed or self._last_words is not None:
            return
        self._last_words = self._token.frame(reason)
        if self._scope is not None:
            self._scope.cancel()

    async def _start(self, send: Send) -> None:
        self._started = True
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )

    async def _say_last(self, send: Send, words: bytes) -> None:
        """The response's last words and its end, once its body stopped (a client gone
        meanwhile takes nothing: the server drops what is sent to it)."""
        with anyio.move_on_after(self._send_timeout):
            if not self._started:
                await self._start(send)
            if words:
                await send({"type": "http.response.body", "body": words, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        conn = offered(scope)
        if conn is not None:
            # The server calls us back when the client goes: no watcher task per viewer
            # (a task and its frames are most of an idle viewer's memory).
            with anyio.CancelScope() as cancel_scope:
                self._scope = cancel_scope
                if self._last_words is not None:  # its token ended before it began
                    cancel_scope.cancel()
                conn.on_disconnect(cancel_scope.cancel)
                await self._run(conn, send)
            return
        async with anyio.create_task_group() as tg:
            self._scope = tg.cancel_scope
            if self._last_words is not None:
                tg.cancel_scope.cancel()

            async def watch_disconnect() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch_disconnect)
            try:
                await self._run(None, send)
            finally:
                tg.cancel_scope.cancel()

    async def _run(self, conn: Connection | None, send: Send) -> None:
        try:
            await self._stream(conn, send)
        except SlowViewer:
            _cut_off(self._send_timeout, self._stream_id, self._on_cut_off)
            # Returning with the response unfinished makes the server close the
            # connection, which is the point.
        finally:
            if self._release is not None:
                self._release()
            if self._chunks is not None:
                await _aclose(self._chunks)

    async def _stream(self, conn: Connection | None, send: Send) -> None:
        release = conn.hold_writes() if conn is not None else None
        if release is not None:
            # Released once this turn of the event loop is over (or the response ends):
            # whatever the response wrote by then goes out in one write.
            self._release = release
            asyncio.get_running_loop().call_soon(release)
        await self._start(send)
        writer = None
        if conn is not None:
            writer = conn.writer(chunks=True) if self._direct_chunks else conn.writer()
        # What the body yields goes straight to the socket too while it takes it (no
        # ASGI message and no cancel scope per chunk); only a socket that holds more than
        # DIRECT_WRITE_LIMIT unsent, and an empty chunk (which waits for it to drain),
        # take ``send``, which waits and cuts a slow viewer off.
        plain = None if self._direct_chunks else writer
        if plain is not None and self._resume is not None:
            self._conn, self._send_fn, self._writer = conn, send, plain
        if self._first:
            await self._send(send, self._first, plain)
        self._chunks = self._body(writer)
        async for chunk in self._chunks:
            await self._send(send, chunk, plain)
        if self._handed:
            return  # the response goes on without this task (``detach``)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send(self, send: Send, chunk: bytes, writer: Writer | None = None) -> None:
        await send_chunk(send, chunk, writer, self._send_timeout)

    def detach(self, sub: Subscription) -> bool:
        """The body's ``Detach``: ``sub``'s viewer is caught up and parked; when the server
        lets the response go on without its task, a ``Handed`` holds it from now on."""
        conn, send, writer = self._conn, self._send_fn, self._writer
        if conn is None or send is None or writer is None or self._handed:
            return False
        assert self._resume is not None and self._leave is not None
        handed = Handed(
            sub,
            send,
            writer,
            self._resume,
            self._leave,
            self._send_timeout,
            self._stream_id,
            self._on_cut_off,
            self._on_end,
            self._token,
        )
        if not conn.detach(handed):
            return False
        handed.hold(conn)
        self._handed = True
        if self._token is not None:
            self._token.entry.target = handed  # its token ends the viewer from now on
        return True


async def send_chunk(send: Send, chunk: bytes, writer: Writer | None, wait: float) -> None:
    """``chunk`` to the viewer: straight to its socket while it takes it, else by ``send``,
    which waits for the socket; ``SlowViewer`` after ``wait`` seconds of waiting."""
    if chunk and writer is not None and writer(chunk):
        return
    with anyio.move_on_after(wait) as scope:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    if scope.cancelled_caught:
        raise SlowViewer


class Handed:
    """An SSE response whose task ended while its viewer was caught up (``detach``): the
    fan-out and the keepalive write to its socket directly. When the viewer has work no
    direct write can do, ``wake`` starts a task (owned by the server) that goes on as the
    response's did until caught up again or ended; a client gone meanwhile leaves at once."""

    __slots__ = (
        "_leave",
        "_on_cut_off",
        "_on_end",
        "_resume",
        "_send",
        "_stream_id",
        "_timeout",
        "_token",
        "_writer",
        "conn",
        "done",
        "sub",
        "task",
    )

    def __init__(  # noqa: PLR0917
        self,
        sub: Subscription,
        send: Send,
        writer: Writer,
        resume: Resume,
        leave: Callable[[Subscription], None],
        timeout: float,
        stream_id: str,
        on_cut_off: Callable[[], None] | None,
        on_end: Callable[[], None] | None,
        token: Held | None = None,
    ) -> None:
        self.sub = sub
        self._send = send
        self._writer = writer
        self._resume = resume
        self._leave = leave
        self._timeout = timeout
        self._stream_id = stream_id
        self._on_cut_off = on_cut_off
        self._on_end = on_end
        self._token = token
        self.conn: Connection | None = None
        """The connection the response goes on on (``hold``): one object per viewer, not
        a bound method of it per use."""
        self.task: asyncio.Task[None] | None = None
        self.done = False

    def hold(self, conn: Connection) -> None:
        """Held here from now on, on its detached connection: the fan-out writes a
        terminal event and the response's end in one write (``Connection.finish``)."""
        self.conn = conn
        self.sub.holder = self
        self.sub.armed = True

    def detach(self, sub: Subscription) -> bool:
        """Caught up again: held here again, and the task ends."""
        if self.done:
            return False
        sub.armed = True
        return True

    def wake(self) -> None:
        """The viewer has work: a task for it (called by its subscription, once); or,
        when all that is left is the end of a response whose terminal event went out
        (every viewer of a stream, at once, at its end), the end, with no task."""
        if self.done or self.conn is None:
            return
        if self.sub.only_ended():
            # Once the fan-out that woke it is over: leaving changes its stream's viewers.
            asyncio.get_running_loop().call_soon(self._ending)
            return
        self._start()

    def _ending(self) -> None:
        if self.done:
            return
        sub, conn = self.sub, self.conn
        if sub.only_ended() and conn is not None and (conn.finish(b"") or sub.finished):
            self._end()  # the end written now, or by the fan-out (``finish``)
        else:
            self._start()

    def finish(self, last: bytes) -> bool:
        """``Holder.finish``: on the connection it goes on on (``hold``)."""
        return self.conn is not None and self.conn.finish(last)

    def _start(self) -> None:
        assert self.conn is not None
        self.task = self.conn.spawn(self._run())
        self.task.add_done_callback(self._ran)

    def lost(self) -> None:
        """The client went away."""
        if self.done:
            return
        task = self.task
        if task is not None and not task.done():
            task.cancel()  # ``_ran`` ends it
        else:
            self._end()

    __call__ = lost  # the connection's ``on_lost`` is this object: no bound method to keep

    async def _run(self) -> None:
        sub = self.sub
        chunks = self._resume(sub, self._writer, self.detach)
        try:
            try:
                async for chunk in chunks:
                    await send_chunk(self._send, chunk, self._writer, self._timeout)
            finally:
                await _aclose(chunks)
            if sub.handed:
                return
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        except SlowViewer:
            _cut_off(self._timeout, self._stream_id, self._on_cut_off)
            if self.conn is not None:
                self.conn.close()

    def _ran(self, task: asyncio.Task[None]) -> None:
        self.task = None
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "an SSE response raised",
                exc_info=task.exception(),
                extra={"stream_id": self._stream_id},
            )
            if self.conn is not None:
                self.conn.close()
        if task.cancelled() or not self.sub.handed:
            self._end()

    def end_token(self, reason: str) -> None:
        """Its token ended (``expiry.Expiries``): the response ends as a drain ends it,
        with what its protocol says of it (``Held.frame``) instead of the ``retry:``."""
        if not self.done and self._token is not None:
            self.sub.drain(self._token.frame(reason))

    def _end(self) -> None:
        """The response is over: its viewer leaves the hub, and its slot is free."""
        if self.done:
            return
        self.done = True
        self._leave(self.sub)
        if self._token is not None:
            self._token.expiries.forget(self._token.entry)
        if self._on_end is not None:
            self._on_end()


def _cut_off(timeout: float, stream_id: str, counted: Callable[[], None] | None) -> None:
    """A viewer whose socket took nothing for ``timeout`` seconds is cut off: logged and
    counted (its connection is closed by the caller)."""
    log.warning(
        "viewer accepted nothing for %.0fs; cut off", timeout, extra={"stream_id": stream_id}
    )
    if counted is not None:
        counted()


@functools.lru_cache(maxsize=64)
def raw_headers(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...]:
    """The response head's headers as Starlette's ``init_headers`` makes them (with the
    content type), made once per set of headers rather than once per viewer."""
    made = SSEResponse.__new__(SSEResponse)
    made.status_code = 200
    made.init_headers(dict(headers))
    return tuple(made.raw_headers)


async def _aclose(it: AsyncIterator[bytes]) -> None:
    if getattr(it, "ag_frame", True) is None:
        return  # an async generator that has ended: nothing to close, no scope to enter
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()
