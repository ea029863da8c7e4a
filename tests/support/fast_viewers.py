"""Viewers of a front-end run in-process, as the fast-viewer tests make them: the front-end
(``serving``, which closes every connection it saw when it stops), a bare connection that
asks for SSE (``Conn``), and a stream the front-end watches (``stream``, whose newest id
``at_newest`` resumes at)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

from tests.support import inprocess
from tests.support.inprocess import Bare, Front
from tests.support.polling import until


@contextlib.asynccontextmanager
async def serving(redis_url: str, **env: str) -> AsyncIterator[Front]:
    async with inprocess.serving(redis_url, {"BROADCASTER_KEEPALIVE_SECONDS": "1", **env}) as f:
        try:
            yield f
        finally:
            for conn in OPEN:
                conn.close()
            OPEN.clear()
            await asyncio.sleep(0)


OPEN: list[Conn] = []


class Conn(Bare):
    """A connection that sends requests for SSE."""

    @classmethod
    async def get(cls, port: int, target: str, *headers: str, version: str = "1.1") -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = cls(reader, writer)
        OPEN.append(conn)  # closed when its front-end stops (``serving``)
        conn.send(target, *headers, version=version)
        return conn

    def send(self, target: str, *headers: str, version: str = "1.1") -> None:
        head = f"GET {target} HTTP/{version}\r\nhost: t\r\naccept: text/event-stream\r\n"
        self.writer.write((head + "".join(h + "\r\n" for h in headers) + "\r\n").encode())

    def head(self) -> tuple[bytes, dict[bytes, bytes]]:
        status, _, rest = self.got.partition(b"\r\n")
        lines = rest.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        return status, dict(line.lower().split(b": ", 1) for line in lines)

    def ids(self) -> list[int]:
        lines = self.got.split(b"\n")
        return [int(line[4:].split(b".")[0]) for line in lines if line.startswith(b"id: ")]


def path(sid: str, query: str = "") -> str:
    return f"/v1/streams/{sid}/events" + (f"?{query}" if query else "")


NEWEST: dict[str, str] = {}
"""Each stream's newest event id, as ``stream`` left it."""


async def stream(front: Front, events: int = 3, *headers: str, sid: str = "") -> str:
    """A stream of ``events`` events that the front-end watches (a first viewer, from the
    start, is kept open): its events after the first went through the topic, which
    holds them. (Whether it also holds the first depends on whether the topic read its
    history when it settled: a viewer from the start may be the app's, one at the
    newest event, ``at_newest``, never is.)"""
    sid = sid or "fast-" + secrets.token_hex(4)
    await front.log.append(sid, [{"type": "data-n", "i": 0}], kind="feed")
    first = await Conn.get(front.port, path(sid), *headers)
    await first.until(b"id: 1.")
    await until(lambda: front.hub.warm(sid), "the stream is watched")
    for i in range(1, events):  # live: the tail holds them from here on
        await front.log.append(sid, [{"type": "data-n", "i": i}], kind="feed")
        await first.until(b"id: %d." % (i + 1))
    NEWEST[sid] = f"{events}.{tag_of(first, events)}"
    return sid


def at_newest(sid: str) -> str:
    return f"last-event-id: {NEWEST[sid]}"


def tag_of(conn: Conn, seq: int) -> str:
    return conn.got.split(b"id: %d." % seq)[1].split(b"\n")[0].decode()
