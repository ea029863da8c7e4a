"""A front-end run in-process: a real uvicorn with the project's protocol on 127.0.0.1 and
a real Redis, so that a test can look at its hub, its tasks and its protocol while bare
sockets talk to it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from broadcaster.core import connection
from broadcaster.core.embedded import free_port
from broadcaster.core.eventlog import EventLog
from broadcaster.fanout.hub import Hub
from broadcaster.http.app import BroadcasterApp, create_app
from broadcaster.http.server import DrainingServer, make_server
from broadcaster.http.settings import Settings
from broadcaster.viewers.fastpath import FastViewers


@dataclass
class Front:
    app: BroadcasterApp
    server: DrainingServer
    port: int
    log: EventLog

    @property
    def hub(self) -> Hub:
        hub: Hub = self.app.state.hub
        return hub

    @property
    def fast(self) -> FastViewers:
        """What answers viewers from the parser (its ``answered`` counts them)."""
        fast = self.server.config.http_protocol_class.fast  # type: ignore[attr-defined]
        assert isinstance(fast, FastViewers)
        return fast


@contextlib.asynccontextmanager
async def serving(redis_url: str, env: dict[str, str], **server: Any) -> AsyncIterator[Front]:
    """A front-end with the settings ``env`` (``BROADCASTER_*``) and ``make_server``'s
    keyword arguments ``server``, stopped (drained first) when the block ends."""
    with _env(env):
        app = create_app(Settings(), redis_url)
    trusted = app.state.settings.trusted_proxies
    made = make_server(
        app, "127.0.0.1", free_port(), 2.0, "warning",
        gc_freeze=False, trusted_proxies=trusted, **server,
    )  # fmt: skip
    task = asyncio.create_task(made.serve())
    client = connection.command_client(redis_url)
    try:
        for _ in range(200):
            if made.started:
                break
            await asyncio.sleep(0.05)
        assert made.started, "the front-end did not start"
        yield Front(app, made, made.config.port, EventLog(client))
    finally:
        app.state.hub.drain()
        made.should_exit = True
        await asyncio.wait_for(task, 20)
        await client.aclose()


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in values.items():
            mp.setenv(name, value)
        yield


class Bare:
    """One connection on a bare socket: what it was sent, as it came."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.got = b""

    async def until(self, marker: bytes, seconds: float = 10.0) -> None:
        async with asyncio.timeout(seconds):
            while marker not in self.got:
                data = await self.reader.read(65536)
                assert data, f"closed before {marker!r}: {self.got[-400:]!r}"
                self.got += data

    async def closed(self, seconds: float = 10.0) -> None:
        """Until the server closes the connection."""
        async with asyncio.timeout(seconds):
            while data := await self.reader.read(65536):
                self.got += data

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
