"""One Redis pub/sub connection, parsed by hiredis in the event loop's data callback.

A message is handed to ``on_message`` from ``data_received`` itself: no task, future or
coroutine step per message, which is why this is not redis-py's ``PubSub`` (measured
side by side: ARCHITECTURE.md). It speaks RESP2 and four commands after ``AUTH``;
replies come in order, so a FIFO of the commands in flight matches each to its command,
and an ``(s)unsubscribe`` that matches none is Redis taking the channel away
(``on_lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import hiredis
from redis.asyncio.connection import RedisSSLContext, SSLConnection
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError

from broadcaster.core import contain

OnMessage = Callable[[bytes, bytes], None]
"""``(channel, payload)`` of a published message."""

OnRead = Callable[[], None]
"""Called after the messages of one read of the socket were handed over: what they brought
for one stream can go to its viewers in one write each, however many messages it was."""

OnError = Callable[[bytes | None, Exception], None]
"""Handling a reply raised: ``(channel of the message, or None, the exception)``. The
connection goes on with the next reply: one stream's message never costs the others
theirs (the default logs it, once a minute)."""

log = logging.getLogger("broadcaster.push")
_throttle = contain.Throttle()


def _log_error(channel: bytes | None, exc: Exception) -> None:
    count = _throttle.due(channel)
    if count is not None:
        log.error(
            "pub/sub: handling a reply (channel %r) raised %r; going on%s",
            channel,
            exc,
            contain.held_back(count),
            exc_info=exc,
        )


@dataclass(frozen=True, slots=True)
class Address:
    """Where a pub/sub connection goes, and how it logs in."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    """A unix socket instead of host and port."""
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    server_hostname: str | None = None

    @property
    def where(self) -> tuple[str, int, str | None]:
        """What tells two addresses apart (not the TLS context, made anew each time)."""
        return self.host, self.port, self.path


def address_from(
    options: dict[str, Any], host: str | None = None, port: int | None = None
) -> Address:
    """An ``Address`` from the connection options redis-py reads from a URL (or a
    cluster's node options): the same credentials and TLS settings the command clients
    use, so the two can never disagree."""
    tls = None
    cls = options.get("connection_class")
    if options.get("ssl") or (isinstance(cls, type) and issubclass(cls, SSLConnection)):
        tls = RedisSSLContext(
            keyfile=options.get("ssl_keyfile"),
            certfile=options.get("ssl_certfile"),
            cert_reqs=options.get("ssl_cert_reqs", "required"),
            ca_certs=options.get("ssl_ca_certs"),
            ca_data=options.get("ssl_ca_data"),
            ca_path=options.get("ssl_ca_path"),
            check_hostname=bool(options.get("ssl_check_hostname", True)),
            min_version=options.get("ssl_min_version"),
            ciphers=options.get("ssl_ciphers"),
            password=options.get("ssl_password"),
        ).get()
    host = host or options.get("host") or "127.0.0.1"
    return Address(
        host=host,
        port=int(port or options.get("port") or 6379),
        path=options.get("path"),
        username=options.get("username"),
        password=options.get("password"),
        tls=tls,
        server_hostname=host if tls is not None and tls.check_hostname else None,
    )


@dataclass(slots=True)
class _Command:
    kind: str  # "sub", "unsub" or "ping"
    channels: list[bytes]
    replies: int
    done: asyncio.Future[None] | None = None
    seen: set[bytes] = field(default_factory=set)


class PubSubProtocol(asyncio.Protocol):
    """The protocol of one connection; use ``connect()``."""

    def __init__(
        self,
        on_message: OnMessage,
        on_read: OnRead,
        on_lost: Callable[[bytes], None],
        on_closed: Callable[[Exception | None], None],
        on_error: OnError | None = None,
    ) -> None:
        self._on_message = on_message
        self._on_read = on_read
        self._on_lost = on_lost
        self._on_closed = on_closed
        self._on_error = on_error or _log_error
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._inflight: deque[_Command] = deque()
        self._handshake: deque[asyncio.Future[Any]] = deque()
        self.closed = False

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but act as one.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Each reply of ``data``, in order. Whatever handing one over raises is that
        reply's alone (``on_error``): the loop goes on with the next, and the connection
        with every channel it carries (the ``try`` costs nothing until something raises).
        Only a protocol error, where the bytes themselves cannot be read, drops it."""
        self._reader.feed(data)
        on_message = self._on_message
        messages = False
        reply: Any = None
        while True:
            try:
                while (reply := self._reader.gets()) is not False:
                    # The hot path first: a published message, straight to the hub.
                    if type(reply) is list and reply[0] in (b"message", b"smessage"):
                        messages = True
                        on_message(reply[1], reply[2])
                    else:
                        self._reply(reply)
                break
            except hiredis.ProtocolError as exc:
                self.abort(ConnectionError(f"Redis protocol error: {exc}"))
                break
            except Exception as exc:
                self._failed(reply, exc)
        if messages:
            try:
                self._on_read()
            except Exception as exc:
                self._failed(None, exc)

    def _failed(self, reply: Any, exc: Exception) -> None:
        about = type(reply) is list and len(reply) >= 2 and isinstance(reply[1], bytes)
        channel = reply[1] if about else None  # the channel a message or confirmation names
        try:
            self._on_error(channel, exc)
        except Exception:
            _log_error(channel, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = ConnectionError(f"pub/sub connection lost: {exc or 'closed by Redis'}")
        for fut in self._handshake:
            if not fut.done():
                fut.set_exception(error)
        for cmd in self._inflight:
            if cmd.done is not None and not cmd.done.done():
                cmd.done.set_exception(error)
        self._handshake.clear()
        self._inflight.clear()
        self._on_closed(exc)

    # --- commands ---

    async def login(self, username: str | None, password: str | None, name: str) -> None:
        """``AUTH`` (when there is a password) and ``CLIENT SETNAME``, before any
        subscription; raises ``AuthenticationError`` when Redis refuses."""
        commands: list[tuple[Any, ...]] = []
        if password is not None:
            commands.append(("AUTH", username, password) if username else ("AUTH", password))
        commands.append(("CLIENT", "SETNAME", name))
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self._handshake.extend(futures)
        self._write(b"".join(_pack(c) for c in commands))
        for command, fut in zip(commands, futures, strict=True):
            reply = await fut
            if isinstance(reply, hiredis.ReplyError):
                if command[0] == "AUTH":
                    raise AuthenticationError(str(reply))
                raise ResponseError(str(reply))

    def subscribe(self, command: str, channels: list[bytes]) -> asyncio.Future[None]:
        """Send ``SUBSCRIBE``/``SSUBSCRIBE``; the future is done once Redis confirmed every
        channel (from then on, everything published there comes here), or fails with the
        error Redis answered (``MOVED`` on a Cluster node that lost the slot)."""
        done = asyncio.get_running_loop().create_future()
        self._send(_Command("sub", channels, len(channels), done), command, channels)
        return done

    def unsubscribe(self, command: str, channels: list[bytes]) -> None:
        self._send(_Command("unsub", channels, len(channels)), command, channels)

    def ping(self) -> asyncio.Future[None]:
        done = asyncio.get_running_loop().create_future()
        self._send(_Command("ping", [], 1, done), "PING", [])
        return done

    def abort(self, exc: Exception | None = None) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _send(self, cmd: _Command, name: str, channels: Iterable[bytes]) -> None:
        if self.closed:
            if cmd.done is not None:
                cmd.done.set_exception(ConnectionError("pub/sub connection closed"))
            return
        self._inflight.append(cmd)
        self._write(_pack((name, *channels)))

    def _write(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)

    # --- replies ---

    def _reply(self, reply: Any) -> None:
        if self._handshake:
            fut = self._handshake.popleft()
            if not fut.done():
                fut.set_result(reply)
            return
        if isinstance(reply, hiredis.ReplyError):
            self._refused(reply)
        elif type(reply) is list and len(reply) >= 2:
            self._confirmed(reply[0], reply[1])
        elif self._inflight and self._inflight[0].kind == "ping":
            self._confirmed(b"pong", b"")  # +PONG: a PING while subscribed to nothing

    def _refused(self, error: hiredis.ReplyError) -> None:
        if not self._inflight:
            return
        cmd = self._inflight.popleft()
        if cmd.done is not None and not cmd.done.done():
            cmd.done.set_exception(ResponseError(str(error)))

    def _confirmed(self, kind: bytes, channel: bytes) -> None:
        head = self._inflight[0] if self._inflight else None
        if kind in (b"unsubscribe", b"sunsubscribe") and (
            head is None or head.kind != "unsub" or channel not in head.channels
        ):
            self._on_lost(channel)  # Redis took it away: not an answer to us
            return
        if head is None:
            return
        head.seen.add(channel)
        head.replies -= 1
        if head.replies <= 0:
            self._inflight.popleft()
            if head.done is not None and not head.done.done():
                head.done.set_result(None)


def _pack(command: tuple[Any, ...]) -> bytes:
    packed: bytes = hiredis.pack_command(command)
    return packed


async def connect(
    address: Address,
    on_message: OnMessage,
    on_read: OnRead,
    on_lost: Callable[[bytes], None],
    on_closed: Callable[[Exception | None], None],
    *,
    name: str = "broadcaster-push",
    on_error: OnError | None = None,
) -> PubSubProtocol:
    """A logged-in pub/sub connection to ``address`` (the caller bounds the time)."""
    loop = asyncio.get_running_loop()

    def factory() -> PubSubProtocol:
        return PubSubProtocol(on_message, on_read, on_lost, on_closed, on_error)

    if address.path is not None:
        _, proto = await loop.create_unix_connection(factory, address.path)
    else:
        _, proto = await loop.create_connection(
            factory,
            address.host,
            address.port,
            ssl=address.tls,
            server_hostname=address.server_hostname,
        )
    try:
        await proto.login(address.username, address.password, name)
    except BaseException:
        proto.abort()
        raise
    return proto


async def close(proto: PubSubProtocol | None) -> None:
    if proto is not None and not proto.closed:
        proto.abort()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)
