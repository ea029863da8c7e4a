"""A TCP relay on 127.0.0.1 to a local port (Redis), in a thread of its own with its own
event loop, for the faults a network puts between a client and its server: what each
direction does with the bytes is a subclass's (``requests``, ``replies``).

    with SomeRelay(redis_port) as relay:
        ...  # a process given relay.url as its REDIS_URL

The test's own loop may block (waiting for a process to start) without stalling the
relay. The relay's loop owns every connection's task: all are cancelled and awaited, and
the thread joined, on exit; a relay that failed says so there.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, Self


class Ended(Exception):
    """One direction of a relayed connection ended (or a fault cut it): end both."""


class Relay:
    """The relay to ``upstream_port`` (``url``: the address to give clients). Each
    connection is relayed by ``requests`` (client to server) and ``replies`` (server to
    client) side by side, given the connection's own ``state()``; either ends it by
    returning or raising ``Ended``. By default both copy bytes as they come."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(10) or self._failed is not None:
            raise RuntimeError(f"the relay did not start: {self._failed!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        if self._thread.is_alive():
            raise RuntimeError("the relay's thread did not stop within 10 s")
        if self._failed is not None:
            raise RuntimeError("the relay failed") from self._failed

    def state(self) -> Any:
        """What one connection's two directions share (None by default)."""
        return None

    async def requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Any
    ) -> None:
        await copy(reader, writer)

    async def replies(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Any
    ) -> None:
        await copy(reader, writer)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by __enter__ or __exit__
            self._failed = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._relay(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        state = self.state()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._direction(self.requests(reader, up_writer, state)))
                group.create_task(self._direction(self.replies(up_reader, writer, state)))
        except* (OSError, Ended):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()

    @staticmethod
    async def _direction(relaying: Any) -> None:
        """One direction; its end ends the other (``Ended``)."""
        await relaying
        raise Ended


async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Bytes as they come, until the reader's end."""
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
