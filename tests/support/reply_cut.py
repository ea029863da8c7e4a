"""A relay to Redis that loses one reply: the command that names ``needle`` reaches Redis
and runs, and its connection is cut before the reply comes back, as a failover or a
network fault does to a client between its write and the answer.

    with ReplyCut(redis_port, needle) as relay:
        ...  # a process given relay.url as its REDIS_URL
        assert relay.cut == 1

A ``-NOSCRIPT`` reply (redis-py's first ``EVALSHA`` of a script Redis does not have yet)
goes through: the command did not run, and the client loads the script and sends it
again, whose reply is the one lost. Only the first ``cuts`` such replies are lost; every
other byte is relayed as it comes. The relay runs its own event loop in a thread of its
own (the test's may block, waiting for a process to start), which owns every relaying
task: all of them are awaited, and the thread joined, on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class ReplyCut:
    """The relay on 127.0.0.1 (``url``); ``cut``: the replies lost so far; ``answered``:
    the needle's replies relayed since."""

    def __init__(self, upstream_port: int, needle: bytes, cuts: int = 1) -> None:
        self.upstream_port = upstream_port
        self.needle = needle
        self.cuts = cuts
        self.cut = 0
        self.answered = 0
        """Replies to the needle's command relayed (after the cuts): a write sent again
        has been answered once this counts it."""
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="reply-cut", daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def __enter__(self) -> ReplyCut:
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
        armed = [False]  # the next reply on this connection is the needle's
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._requests(reader, up_writer, armed))
                group.create_task(self._replies(up_reader, writer, armed))
        except* (ConnectionError, _Cut):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(ConnectionError):
                    await w.wait_closed()

    async def _requests(
        self, reader: asyncio.StreamReader, up: asyncio.StreamWriter, armed: list[bool]
    ) -> None:
        while data := await reader.read(65536):
            if self.needle in data:
                armed[0] = True  # before Redis can answer
            up.write(data)
            await up.drain()
        raise _Cut  # the client closed: so does the other direction

    async def _replies(
        self, up: asyncio.StreamReader, writer: asyncio.StreamWriter, armed: list[bool]
    ) -> None:
        while data := await up.read(65536):
            if armed[0]:
                armed[0] = False
                if not data.startswith(b"-NOSCRIPT"):
                    if self.cut < self.cuts:
                        self.cut += 1
                        raise _Cut  # the reply is dropped and the connection cut
                    self.answered += 1
            writer.write(data)
            await writer.drain()
        raise _Cut


class _Cut(Exception):
    """One side of a relayed connection ended (or a reply was lost): end both."""
