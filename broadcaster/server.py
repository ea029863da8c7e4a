"""Running the front-end under uvicorn, with a shutdown that does not hang.

uvicorn waits for open responses to finish before it runs the lifespan shutdown, and SSE
responses never finish by themselves: left alone, SIGTERM would hang until a timeout and
then cut connections without running their cleanup. So the signal first *drains* the hub
(every open SSE response ends cleanly; clients reconnect elsewhere with Last-Event-ID),
then uvicorn's own shutdown proceeds, bounded by ``shutdown_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

log = logging.getLogger("broadcaster.server")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Called from a signal handler: hand the drain to the loop, do not run it here.
        if self._loop is not None and not self.should_exit:
            log.info("signal %d: draining open streams", sig)
            self._loop.call_soon_threadsafe(self._on_exit)
        super().handle_exit(sig, frame)


def make_server(
    app: FastAPI, host: str, port: int, shutdown_seconds: float, log_level: str
) -> DrainingServer:
    def drain() -> None:
        hub = getattr(app.state, "hub", None)
        if hub is not None:
            hub.drain()

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=int(max(1, shutdown_seconds)),
        access_log=False,
        lifespan="on",
    )
    return DrainingServer(config, drain)
