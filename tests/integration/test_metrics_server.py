"""The ``/metrics`` of the worker and the webhook deliverer, served by their event loop
(``broadcaster/core/process.py``): the answers, the limits on what a client may
send, a stop that ends every connection; and a worker that serves its metrics runs no
thread of its own (a scrape's garbage collection then runs on the loop, where the
generators it finalizes live)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from broadcaster.core import process
from broadcaster.core.embedded import free_port
from broadcaster.core.process import MetricsServer
from tests.support.procs import start_worker

pytestmark = pytest.mark.anyio


async def _started() -> MetricsServer:
    registry = CollectorRegistry()
    Counter("scrapes_seen", "A counter to find", registry=registry).inc(3)
    return await MetricsServer(registry).start("127.0.0.1", 0)


async def _raw(port: int, data: bytes) -> bytes:
    """What the server answers ``data`` before it closes (b"" if it closes first)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_every_path_answers_the_metrics_to_get_and_head_only() -> None:
    server = await _started()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as c:
            for path in ("/metrics", "/", "/anything?x=1"):
                r = await c.get(path)
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/plain; version=")
                assert "scrapes_seen_total 3.0" in r.text
            head = await c.head("/metrics")
            assert head.status_code == 200 and head.content == b""
            assert int(head.headers["content-length"]) == len(r.content)
            post = await c.post("/metrics", content=b"x")
            assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
    finally:
        await server.stop()


async def test_a_head_too_long_or_too_slow_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(process, "READ_SECONDS", 0.3)
    server = await _started()
    try:
        huge = b"GET /metrics HTTP/1.1\r\nx-pad: " + b"a" * process.MAX_HEAD + b"\r\n\r\n"
        assert await _raw(server.port, huge) == b""
        assert await _raw(server.port, b"GET /metr") == b""  # half a head, then silence
        ok = await _raw(server.port, b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK") and b"scrapes_seen_total 3.0" in ok
    finally:
        await server.stop()


async def test_at_most_so_many_connections_and_a_stop_ends_them_all() -> None:
    server = await _started()
    port = server.port
    held = []
    for _ in range(process.MAX_CONNECTIONS):
        held.append(await asyncio.open_connection("127.0.0.1", server.port))
    await asyncio.sleep(0.2)
    assert len(server._answering) == process.MAX_CONNECTIONS
    assert await _raw(server.port, b"GET / HTTP/1.1\r\n\r\n") == b""  # one too many: closed
    await asyncio.wait_for(server.stop(), 10)
    assert not server._answering
    for reader, writer in held:
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), 1):
        pass


def test_a_worker_serves_its_metrics_once_it_says_it_is_up_and_runs_no_thread_for_them(
    tmp_path: Path, redis_url: str
) -> None:
    port = free_port()
    worker = start_worker(redis_url, tmp_path, env={"WORKER_METRICS_PORT": str(port)})
    try:
        # At once, no retry: a worker logs that it is up only once its metrics answer.
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
        assert "worker_generations_finished_total" in r.text, r.text[:500]
        for _ in range(5):
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
        threads = os.listdir(f"/proc/{worker.pid}/task")
        assert threads == [str(worker.pid)], threads
    finally:
        assert worker.stop() == 0, worker.log()
