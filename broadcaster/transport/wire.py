"""What goes over each connection: uvicorn's httptools protocol, with what the front-end
adds to it.

- The request's ``Connection`` in its ASGI scope (``seam.CONNECTION``): a started,
  chunked response may write body chunks straight to its socket (``writer``), which
  lets the hub's reader copy a live event to every caught-up viewer without waking one
  task per viewer; the client's going is a callback, not a task (``on_disconnect``); a
  response's first writes go out as one (``hold_writes``); and a response may go on
  after its task has ended (``detach``), so that a caught-up viewer holds no task at all.
- An SSE viewer that ``viewers/fastpath.py`` can answer from the parser's callback is answered
  there, with no scope and no task at all; one waiting for its turn at the admission
  rate waits in ``Turns`` (one timer for all of them).
- Limits on the request head (httptools keeps none), and ``TCP_NOTSENT_LOWAT``.
- Less per connection than uvicorn's own: what is the same for every connection of a
  server (its loggers, its config) is made once, the client's address is the one uvloop
  kept from the accept, and the socket options are set once, on the listening socket.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import urllib.parse
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.utils import get_local_addr

from broadcaster.core.sse import Writer
from broadcaster.transport.cycles import (
    ENDED,
    OPEN,
    WRITTEN,
    DetachableCycle,
    HeldWrites,
    LazyEvent,
    LeanFlow,
    Pipeline,
)
from broadcaster.transport.fast import FastPath, Opening
from broadcaster.transport.head import NOT_ASKED, HeadFirst
from broadcaster.transport.line import END, LastChunk, Server, ViewerLine, answer
from broadcaster.transport.linger import ClosesLingering, Lingering
from broadcaster.transport.seam import CONNECTION, DIRECT_WRITE_LIMIT
from broadcaster.transport.turns import TURNS_TICK, Turns

__all__ = ["END", "TURNS_TICK", "HeldWrites", "LastChunk", "Turns"]  # re-exported: the tests' names

log = logging.getLogger("broadcaster.server")

C = TypeVar("C", bound=RequestResponseCycle)


class Offer:
    """One response's ``Connection`` (``seam``): its connection's writes, end, tasks and
    close, bound to the response's own cycle (a request pipelined behind it has its
    own); for a request that goes to the app, its scope's ``seam.CONNECTION``."""

    __slots__ = ("conn", "cycle")

    def __init__(self, conn: DirectWriteProtocol, cycle: Any = None) -> None:
        self.conn = conn
        self.cycle: Any = cycle
        """Set once uvicorn made it (``DirectWriteProtocol.on_headers_complete``)."""

    def writer(self, chunks: bool = False) -> Writer | None:
        return self.conn._direct_writer(self.cycle, chunks)

    def hold_writes(self) -> Callable[[], None] | None:
        return self.conn._hold_writes(self.cycle)

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        self.conn._on_disconnect(callback)

    def detach(self, on_lost: Callable[[], None]) -> bool:
        return self.conn._detach(self.cycle, on_lost)

    def finish(self, last: bytes) -> bool:
        return self.conn._finish(self.cycle, last)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return self.conn._spawn(coro)

    def close(self) -> None:
        self.conn.transport.close()


class DirectWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, offering each request the direct-write and the
    disconnect-callback extensions."""

    _lost = False
    _on_lost: Callable[[], None] | None = None
    _held: HeldWrites | None = None
    _chunks = LastChunk()  # shared by the connections of the process (one event loop)
    _last_chunks = LastChunk(END)  # a stream's terminal event, and the body's end
    notsent_lowat = 0
    """``TCP_NOTSENT_LOWAT`` for each connection (0: leave the kernel's); set per server."""
    sndbuf = 0
    """``SO_SNDBUF`` for each connection (0: leave the kernel's)."""
    options_per_connection = True
    """Whether each connection sets those itself (not when the listening socket has)."""
    max_head = 64 * 1024
    """The most bytes of a request's head (request line and headers); set per server."""
    _head = 0
    """Bytes received of the request head being parsed; -1 once its headers are complete."""
    _parsed = 0
    _headers = 0
    _refused = False
    fast: FastPath | None = None
    """Asked first about each request, once its head is parsed (``viewers/fastpath.py``)."""
    _pending = False
    """A request the fast path may answer, whole, not asked about yet: it is, once the
    read that completed it is parsed and no request follows it (``data_received``)."""
    _candidate = False
    """The request being parsed may be the fast path's (its head is, its body is not)."""
    _waiting: Opening | None = None
    """A fast viewer waiting for its turn at the admission rate (``Turns``)."""
    _turns: Turns | None = None
    _made_for: Any = None
    """The config whose server this class has made a connection for (``__init__``)."""
    lines: Server | None = None
    """What the server's viewer lines share (``line.Server``), made with ``_made_for``."""
    _asked: tuple[Opening | None] | None = None
    """The fast path's answer to the request being read, when the connection's first
    protocol asked already (``head.HeadFirst``): not asked again."""
    _server_state: Any = None
    _app_state: Any = None
    _linger: Lingering | None = None
    """Once an answer is written before its request's body was read: the connection's
    lingering close (what the client still sends is dropped unparsed: ``linger``)."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """uvicorn's, with what every connection of the server shares (its config, app,
        loop, loggers, limits) made once, as class attributes (each class is one
        server's: ``make_server``): uvicorn's takes two loggers' lock, walks the logger
        tree, and asks for the event loop, per connection."""
        cls = type(self)
        if cls._made_for is not config:
            super().__init__(config, server_state, app_state, _loop)
            for name in _SHARED:
                setattr(cls, name, getattr(self, name))
            cls._turns = Turns(self.loop)
            cls._server_state, cls._app_state = server_state, app_state
            cls.lines = Server(server_state, cls.max_head, cls._back)
            cls._made_for = config
            return
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.app_state = app_state
        self.server_state = server_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.timeout_keep_alive_task = None
        self.transport = cast(Any, None)
        self.flow = cast(Any, None)
        self.server = self.client = self.scheme = None
        self.pipeline = Pipeline()  # type: ignore[assignment]
        self.scope = cast(Any, None)
        self.headers = cast(Any, None)
        self.expect_100_continue = False
        self.cycle = cast(Any, None)

    def connection_made(self, transport: Any) -> None:
        """uvicorn's, reading the client's address only (the server's is read for the
        requests that need a scope), with no ``asyncio.Event`` (a deque of 760 bytes
        that an open viewer never waits on), and no socket object: uvloop keeps the
        peer's address from the accept, and the socket's options are the listening
        socket's, which an accepted socket inherits (``listening``)."""
        self.connections.add(self)
        self.transport = transport
        self.flow = LeanFlow(transport=transport)
        self.scheme = "https" if transport.get_extra_info("sslcontext") else "http"
        try:
            peer = transport.get_extra_info("peername")
        except OSError:
            peer = None
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.socket_options(transport)

    @classmethod
    def listening(cls, sockets: list[Any]) -> None:
        """The server's listening ``sockets`` get the options each connection is to have,
        which Linux copies to every socket it accepts: then no connection needs a socket
        object and a system call or three of its own (until this is called, or where it
        fails, each sets them for itself)."""
        if sockets and all(set_options(s, cls.notsent_lowat, cls.sndbuf) for s in sockets):
            cls.options_per_connection = False

    # --- the request head's limits: httptools (llhttp) keeps none of its own ---

    def data_received(self, data: bytes) -> None:
        """Feed the parser, counting the bytes of a head still incomplete: past
        ``max_head`` the request is refused (431) and the connection closed, so a header
        of megabytes costs at most ``max_head`` and one read of memory. Once the
        connection lingers, what comes is dropped, never parsed."""
        if self._linger is not None:
            self._linger.drop(data)
            return
        if self._refused:
            return
        if self._head >= 0:
            self._head += len(data)
        super().data_received(data)
        if self._refused or self._head > self.max_head:
            self._refuse_head()
            return
        if self._candidate:  # a head, and a body still to come: the app's
            self._candidate = False
            self._to_app(more_body=True)
        elif self._pending:
            self._pending = False
            if not self.transport.is_closing():
                self._dispatch()

    def on_url(self, url: bytes) -> None:
        self._parsed += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed += len(name) + len(value) + 4
        self._headers += 1
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        if self._parsed > self.max_head or self._headers > MAX_HEADERS:
            self._refused = True  # the whole head came in one read: never started
            return
        self._head = -1
        if self.fast is not None and self._may_be_fast():
            # Asked once the read is parsed: a request pipelined behind it in the same
            # read sends it to the app (``on_message_begin``), which answers both in order.
            self._candidate = True
            return
        offer = self._make_scope()
        super().on_headers_complete()
        cycle = getattr(self, "cycle", None)
        offer.cycle = cycle
        if cycle is not None and not cycle.message_event.is_set():
            cycle.message_event = LazyEvent()
        if cycle is not None and self.parser.get_method() not in _BODILESS:
            cycle.transport = ClosesLingering(cycle.transport, self._close_after_answer)

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        if self._candidate:  # a GET with a body: the app's, as any request with one
            self._candidate = False
            self._to_app(more_body=True)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        if self._candidate:  # whole, with no body: asked about once the read is parsed
            self._candidate = False
            self._pending = True
        else:
            super().on_message_complete()
        self._head = self._parsed = self._headers = 0

    def _refuse_head(self) -> None:
        self._refused = True
        if self.transport.is_closing():
            return
        cycle = getattr(self, "cycle", None)
        if cycle is None or cycle.response_complete:  # else a response is under way
            self.transport.write(_head_refusal(self.max_head))
            self._lingering()
            return
        self.transport.close()

    def _close_after_answer(self) -> None:
        """A response's close (its cycle's transport: ``ClosesLingering``): lingering
        while its request's body is still coming (``linger``), else at once."""
        cycle = self.cycle
        if self._linger is not None:
            return  # closing already, once the client stops or the linger is over
        if cycle is not None and cycle.more_body and not self.transport.is_closing():
            self._lingering()
            return
        self.transport.close()

    def _lingering(self) -> None:
        self.flow.resume_reading()  # what uvicorn paused, for a body nobody read
        self._linger = Lingering(self.transport, self.loop)

    def on_response_complete(self) -> None:
        """uvicorn's, but a lingering connection is closing: no request follows, and no
        keep-alive timer is armed."""
        if self._linger is not None:
            self.server_state.total_requests += 1
            return
        super().on_response_complete()

    def on_message_begin(self) -> None:
        if self._pending or self._waiting is not None:
            # A request pipelined behind one the fast path has not answered (not asked
            # yet, or waiting for its stream or its turn): that one goes to the app now,
            # whose cycle queues this one behind it (uvicorn's pipeline), so both are
            # answered whole, once, in order. Its url and headers are read before the
            # parser's state is reset for this one, below.
            self._pending = False
            self._waiting = None  # what it waited for finds it gone (``_settled``, ``Turns``)
            self._to_app()
        # uvicorn's, less the scope: a viewer answered from the parser needs none
        # (``_make_scope`` makes it for the app).
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = cast(Any, None)

    def _make_scope(self) -> Offer:
        """The request's ASGI scope, as uvicorn's ``on_message_begin`` makes it, with its
        ``Connection`` as an extension (ASGI types extensions as dict[str, dict]; ours is
        an object, by design), bound to the request's own cycle (``Offer``: a request
        pipelined behind it has its own). The server's address is read here, for the
        requests that go to the app."""
        if self.server is None:
            self.server = get_local_addr(self.transport)
        offer = Offer(self)
        self.scope = cast(
            Any,
            {
                "type": "http",
                "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
                "http_version": "1.1",
                "server": self.server,
                "client": self.client,
                "scheme": self.scheme,
                "root_path": self.root_path,
                "headers": self.headers,
                "state": self.app_state.copy(),
                "extensions": {CONNECTION: offer},
            },
        )
        return offer

    def _may_be_fast(self) -> bool:
        """Whether the fast path may answer the request whose head is parsed: a
        keep-alive HTTP/1.1 GET of a stream's events, on a connection with no response
        under way (else uvicorn queues it behind that one)."""
        parser = self.parser
        return not (
            not self.url.startswith(self.fast.prefix)  # type: ignore[union-attr]
            or parser.get_method() != b"GET"
            or parser.get_http_version() != "1.1"
            or not parser.should_keep_alive()
            or parser.should_upgrade()
            or self.expect_100_continue
            or (self.cycle is not None and not self.cycle.response_complete)  # pipelined
        )

    def _dispatch(self) -> None:
        """A whole request with nothing pipelined behind it: an SSE viewer answered now,
        with no scope and no task (``viewers/fastpath.py``; its cycle made started and
        detached, as a handed-over response's is), or later; else the app's."""
        assert self.fast is not None
        try:
            if self._ask(self.fast, settle=True):
                return
        except Exception:  # a defect here must not cost the request: the app answers it
            log.exception("answering a viewer from the parser failed; the app answers it")
            self._waiting = None
        self._to_app()

    def _ask(self, fast: FastPath, *, settle: bool) -> bool:
        """``fast``'s answer: now, after the viewer's turn (``Turns``), or once its
        stream's topic settled (asked again then: ``_settled``); False: the app's."""
        asked, self._asked = self._asked, None
        if asked is not None:
            opening = asked[0]
        else:
            url = httptools.parse_url(self.url)
            opening = fast.open(url.path, url.query, self.headers, self.client, settle=settle)
        if opening is None:
            return False
        if opening.until is not None:
            self._waiting = opening
            if opening.until(functools.partial(self._settled, opening)):
                return True
            self._waiting = None
            return False
        if opening.wait:  # its turn at the admission rate: no task waits for it either
            self._waiting = opening
            assert self._turns is not None
            self._turns.add(self, opening)
            return True
        return self._answer(opening)

    def _settled(self, opening: Opening) -> None:
        """The topic a viewer waited for settled (or the wait is over): asked again."""
        if self._waiting is not opening:
            return  # gone meanwhile
        self._waiting = None
        try:
            if self.fast is None or not self._ask(self.fast, settle=False):
                self._to_app()
        except Exception:
            log.exception("answering a viewer that waited for its stream failed")
            self.transport.close()

    def _to_app(self, *, more_body: bool = False) -> None:
        """A request the fast path did not answer goes to the app after all, as uvicorn's
        ``on_headers_complete`` would have sent it (which reads the parser, and the
        parser may have moved on): a keep-alive HTTP/1.1 GET (``_may_be_fast``), its
        head its whole request unless ``more_body``."""
        url = httptools.parse_url(self.url)
        path = url.path.decode("ascii")
        offer = self._make_scope()
        self.scope["method"] = "GET"
        self.scope["path"] = self.root_path + (urllib.parse.unquote(path) if "%" in path else path)
        self.scope["raw_path"] = self.root_path.encode("ascii") + url.path
        self.scope["query_string"] = url.query or b""
        self.cycle = offer.cycle = self._cycle(RequestResponseCycle, self.scope)
        self.cycle.more_body = more_body
        self._start_asgi_task(self.cycle, self.app)

    def _cycle(self, kind: type[C], scope: Any, *, access_log: bool | None = None) -> C:
        """A keep-alive request's cycle, as uvicorn's ``on_headers_complete`` makes it
        (``kind``: uvicorn's, or one that may be detached)."""
        return kind(
            scope=scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log if access_log is None else access_log,
            default_headers=self.server_state.default_headers,
            message_event=LazyEvent(),
            expect_100_continue=False,
            keep_alive=True,
            on_response=self.on_response_complete,
        )

    def _answer(self, opening: Opening) -> bool:
        """The viewer answered (``line.answer``), its socket handed to its ``ViewerLine``:
        what this protocol holds (the parser, its callbacks, the flow control) is let go."""
        assert self.lines is not None
        line = ViewerLine(self.transport, self.lines)
        if not answer(line, opening):
            return False
        self._unset_keepalive_if_required()
        line.take_over(self)
        self.parser = cast(Any, None)  # the parser holds this protocol's callbacks
        return True

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        """What uvicorn makes for each new connection: with the fast path, once the
        server has made its first, the small protocol that reads the first request's head
        (``head.HeadFirst``), which hands anything but a viewer it answers to this class
        (``take``)."""
        config = kwargs.get("config", args[0] if args else None)
        if cls.fast is not None and cls._made_for is not None and cls._made_for is config:
            return HeadFirst(cls)
        return super().__new__(cls)

    @classmethod
    def _made(cls) -> DirectWriteProtocol:
        """This protocol for a connection of the server whose first it made already."""
        protocol = object.__new__(cls)
        protocol.__init__(cls._made_for, cls._server_state, cls._app_state)  # type: ignore[misc]
        return protocol

    @classmethod
    def take(cls, transport: Any, received: bytes, asked: Opening | bool | None) -> None:
        """The connection is this protocol's from now on (``head.HeadFirst``), which
        reads ``received`` as if it had been the connection's from the start; ``asked``:
        the fast path's answer to the request in it, if it was asked."""
        protocol = cls._made()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if asked is not NOT_ASKED:
            protocol._asked = (cast(Opening | None, asked),)
        try:
            protocol.data_received(received)
        finally:
            protocol._asked = None

    @classmethod
    def socket_options(cls, transport: Any) -> None:
        """The connection's socket options, unless the listening socket has them."""
        if cls.options_per_connection and (cls.notsent_lowat or cls.sndbuf):
            sock = transport.get_extra_info("socket")
            if sock is not None:
                set_options(sock, cls.notsent_lowat, cls.sndbuf)

    @classmethod
    def _back(cls, transport: Any, received: bytes) -> None:
        """A viewer's response ended on a keep-alive connection (``ViewerLine``): a new
        protocol takes the connection over, as after any response, and reads what the
        client sent meanwhile."""
        protocol = cls._made()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.on_response_complete()
        if received:
            protocol.data_received(received)

    def answer_later(self, opening: Opening) -> None:
        """A fast viewer's turn came (``Turns``): answered now, else by the app as any
        request (from the start: its checks and its own turn)."""
        if self._waiting is not opening:
            return  # gone, or refused meanwhile
        self._waiting = None
        if not self._answer(opening):
            self._to_app()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        cycle.__class__ = DetachableCycle  # the same object, which may outlive its task
        super()._start_asgi_task(cycle, app)

    def _detach(self, cycle: Any, on_lost: Callable[[], None]) -> bool:
        """Let the response go on without its task (``seam.Connection.detach``)."""
        if (
            not isinstance(cycle, DetachableCycle)
            or self._lost
            or not cycle.response_started
            or cycle.response_complete
            or cycle.disconnected
        ):
            return False
        cycle.detached = True
        self._on_lost = on_lost
        # The request is done with: what the response still uses of its scope is the
        # method (``RequestResponseCycle.send``). Its headers, query, addresses and these
        # extensions (a kilobyte and more) need not live as long as the viewer watches.
        cycle.scope = cast(Any, {"type": "http", "method": cycle.scope["method"]})
        if self.cycle is cycle:  # else a request pipelined behind it is parsed already
            self.scope = cycle.scope
            self.headers = []
        return True

    def _finish(self, cycle: DetachableCycle, last: bytes) -> bool:
        """The detached response's end, as its ``send`` of the last, empty body would
        write it (``RequestResponseCycle.send``), now; False when the socket holds more
        than ``DIRECT_WRITE_LIMIT`` unsent (then ``send`` waits for it).

        With ``last`` (SSE bytes: a stream's terminal event), from inside the fan-out's
        loop over the stream's viewers: ``last`` and the body's end in one write, and
        nothing more, so that the loop goes on to the next viewer; what follows a
        response's end (the connection's next request, its keep-alive timer) waits for
        the call without ``last``, once the loop is over (``Handed``).

        ``cycle`` is the response's own (bound when it detached): a request pipelined
        behind it has a cycle of its own, which its own task answers once this one's
        end is written (uvicorn's pipeline, started by ``on_response``)."""
        transport = self.transport
        if cycle.disconnected or cycle.ended == ENDED:
            return False
        if cycle.ended == OPEN:
            if (
                cycle.response_complete
                or transport.is_closing()
                or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT
            ):
                return False
            (self._held or transport).write(self._last_chunks.of(last) if last else END)
            cycle.response_complete = True
            if last:
                cycle.ended = WRITTEN
                return True
        cycle.ended = ENDED
        cycle.message_event.set()
        if not cycle.keep_alive:
            transport.close()
        cycle.on_response()
        return True

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        """A task of a detached response: the server's, awaited at its shutdown as the
        requests' own are."""
        task: asyncio.Task[None] = self.loop.create_task(coro)
        tasks = self.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    def _hold_writes(self, cycle: Any) -> Callable[[], None] | None:
        """Keep what the response writes (its head included) in memory until the
        returned function is called: a response's first writes then reach the socket as
        one ``send``. None once the response has started."""
        if cycle is None or cycle.response_started or self._held is not None:
            return None
        held = self._held = HeldWrites(cycle.transport)
        cycle.transport = held

        def release() -> None:
            if self._held is held:
                self._held = None
                cycle.transport = held.real
            held.release()

        return release

    def _on_disconnect(self, callback: Callable[[], None]) -> None:
        if self._lost:
            callback()
        else:
            self._on_lost = callback

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting = None
        if self._linger is not None:
            self._linger.close()
        super().connection_lost(exc)
        self._lost = True
        callback, self._on_lost = self._on_lost, None
        if callback is not None:
            callback()

    def _direct_writer(self, cycle: Any, chunks: bool = False) -> Writer | None:
        if (
            cycle is None
            or not cycle.response_started
            or cycle.response_complete
            or not cycle.chunked_encoding
            or cycle.disconnected
        ):
            return None
        transport = self.transport
        if chunks:  # one closure made, of the two: every open viewer holds its writer

            def write_chunk(chunk: bytes) -> bool:
                if transport.is_closing() or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT:
                    return False
                (self._held or transport).write(chunk)
                return True

            return write_chunk
        last = self._chunks

        def write(data: bytes) -> bool:
            if transport.is_closing() or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT:
                return False
            (self._held or transport).write(last.of(data))
            return True

        return write


_SHARED = (
    "config", "app", "loop", "logger", "access_logger", "access_log", "ws_protocol_class",
    "root_path", "asgi_version", "limit_concurrency", "timeout_keep_alive",
)  # fmt: skip
"""What uvicorn's protocol sets per connection that is the same for all of a server's."""


def set_options(sock: Any, notsent_lowat: int, sndbuf: int) -> bool:
    """A viewer that stops reading holds what the kernel would buffer for it: without a
    bound, megabytes (the send buffer autotunes up to tcp_wmem's maximum). With
    ``TCP_NOTSENT_LOWAT``, the kernel holds at most this much unsent, the socket reports
    itself unwritable past it, and the rest stays in the process, where it is bounded
    and counted (seam's DIRECT_WRITE_LIMIT, then the slow-viewer cut-off).
    False if the socket refused them."""
    try:
        if notsent_lowat:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, notsent_lowat)
        if sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    except OSError:
        return False
    return True


_BODILESS = (b"GET", b"HEAD")
"""Methods whose requests carry no body to leave unread (``ClosesLingering``)."""

MAX_HEADERS = 256
"""The most header lines a request may carry (431 beyond)."""


def _head_refusal(limit: int) -> bytes:
    body = (
        b'{"error":"headers_too_large","message":"the request line and headers are over '
        b'%d bytes, or over %d headers"}' % (limit, MAX_HEADERS)
    )
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%b" % (len(body), body)
    )


TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)
"""Linux's option number (Python names it from 3.12 on)."""
