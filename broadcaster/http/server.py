"""The front-end's server: the app under ``transport/serving.py``'s uvicorn, its SSE
viewers asked about first from the parser (``viewers/fastpath.py``), its hub drained at
SIGTERM, and its open viewers counted for the garbage collector's freezer."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from broadcaster.transport.serving import DrainingServer, build_server, exit_on_sigterm
from broadcaster.viewers.fastpath import FastViewers

__all__ = ["DrainingServer", "exit_on_sigterm", "make_server"]


def make_server(
    app: FastAPI,
    host: str,
    port: int,
    shutdown_seconds: float,
    log_level: str,
    *,
    reuse_port: bool = False,
    notsent_lowat: int = 0,
    sndbuf: int = 0,
    gc_freeze: bool = True,
    max_header_bytes: int = 64 * 1024,
    keep_alive_seconds: float = 75.0,
    trusted_proxies: str | None = None,
) -> DrainingServer:
    """``trusted_proxies``: uvicorn's ``forwarded_allow_ips`` (None: its default, the
    ``FORWARDED_ALLOW_IPS`` variable or else loopback)."""

    def drain() -> None:
        hub = getattr(app.state, "hub", None)
        if hub is not None:
            hub.drain()

    def viewers() -> Callable[[], tuple[int, int]]:
        hub = app.state.hub
        return lambda: (hub.viewers, hub.left)

    return build_server(
        app,
        host,
        port,
        shutdown_seconds,
        log_level,
        fast=lambda trusted: FastViewers(app, trusted),
        drain=drain,
        viewers=viewers,
        reuse_port=reuse_port,
        notsent_lowat=notsent_lowat,
        sndbuf=sndbuf,
        gc_freeze=gc_freeze,
        max_header_bytes=max_header_bytes,
        keep_alive_seconds=keep_alive_seconds,
        trusted_proxies=trusted_proxies,
    )
