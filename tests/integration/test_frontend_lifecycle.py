"""Front-end processes under stress: a viewer that stops reading, viewers that leave, and
Redis work per event. Real uvicorn processes on 127.0.0.1, real sockets."""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio.client import PubSub

from broadcaster.core import connection, keys
from broadcaster.core.embedded import EmbeddedRedis
from broadcaster.core.eventlog import EventLog
from tests.support.monitor import commands_seen
from tests.support.polling import poll, until
from tests.support.ports import free_port
from tests.support.procs import Proc, SSEResult, parse_sse, read_sse, start_frontend
from tests.support.sse_transport import SSETransport

pytestmark = pytest.mark.anyio


@pytest.fixture
def slow_frontend(redis_url: str, tmp_path: Path) -> Iterator[Proc]:
    proc = start_frontend(
        redis_url,
        tmp_path,
        "frontend-slow",
        env={"BROADCASTER_VIEWER_BUFFER": "16", "BROADCASTER_SLOW_VIEWER_TIMEOUT": "6"},
    )
    yield proc
    proc.stop()


def open_stalled_viewer(port: int, path: str) -> socket.socket:
    """An SSE client that sends its request and then reads nothing at all."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    return sock


def drain_socket(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
        if data.endswith(b"data: [DONE]\r\n\r\n") or data.endswith(b"0\r\n\r\n"):
            break
    sock.close()
    return data


def dechunk(raw: bytes) -> bytes:
    """The body of a chunked HTTP/1.1 response, up to where the connection ended."""
    _, _, rest = raw.partition(b"\r\n\r\n")
    body = b""
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0 or len(rest) < size:
            break
        body += rest[:size]
        rest = rest[size + 2 :]
    return body


class RssSampler(threading.Thread):
    def __init__(self, proc: Proc) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.peak = proc.rss_kb()
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.wait(0.02):
            self.peak = max(self.peak, self.proc.rss_kb())


async def test_a_stalled_viewer_neither_slows_others_nor_grows_memory(
    slow_frontend: Proc, redis_url: str
) -> None:
    fe = slow_frontend
    sid = "stall-" + secrets.token_hex(4)
    path = f"/v1/streams/{sid}/events"
    redis = connection.command_client(redis_url)
    event_log = EventLog(redis)
    blob = "x" * 16_000
    n_events = 2000  # 32 MB through the front-end
    try:
        await event_log.append(sid, [{"type": "data-n", "i": 0}], kind="feed")
        stalled = open_stalled_viewer(fe.port or 0, path)
        async with httpx.AsyncClient(timeout=60) as client:
            await asyncio.sleep(0.3)  # the stalled viewer is subscribed
            baseline = fe.rss_kb()
            sampler = RssSampler(fe)
            sampler.start()
            viewers = [asyncio.create_task(read_sse(client, fe.url + path)) for _ in range(5)]
            await asyncio.sleep(0.3)
            for start in range(1, n_events, 20):
                batch = [{"type": "data-n", "i": i, "blob": blob} for i in range(start, start + 20)]
                await event_log.append(sid, batch[: n_events - start], kind="feed")
            await event_log.append(sid, [{"type": "finish"}], kind="feed")
            results: list[SSEResult] = await asyncio.gather(*viewers)
            sampler.stop_flag.set()
            sampler.join()
            total = n_events + 1
            for r in results:
                assert r.ids == list(range(1, total + 1)), "normal viewers got everything"
            growth_mb = (sampler.peak - baseline) / 1024
            print(
                f"front-end RSS: baseline {baseline / 1024:.1f} MB, peak growth {growth_mb:.1f} MB"
            )
            # Held without bound, the stalled viewer's share alone would be the 32 MB; the
            # growth measured is 6-15 MB whatever is stalled (the readers' socket buffers,
            # pages read, the allocator's arenas), hence the margin.
            assert growth_mb < 24, "the stalled viewer's buffer is bounded (32 MB went through)"

            # The stalled viewer reads nothing for longer than the cut-off (6 s).
            await until(lambda: "cut off" in fe.log(), "the stalled viewer cut off", 30)
            raw = await asyncio.to_thread(drain_socket, stalled)
            events, _, _ = parse_sse(dechunk(raw))
            got = [int(e.id.split(".")[0]) for e in events if e.id]
            assert got == list(range(1, len(got) + 1)), "what it got is a clean prefix"
            assert len(got) < total, "it was cut off, not fed without bound"
            assert "cut off" in fe.log()
            # ... and resumes with Last-Event-ID, as a browser would.
            rest = await read_sse(client, fe.url + path, last_event_id=str(got[-1] if got else 0))
            assert got + rest.ids == list(range(1, total + 1))
            assert rest.done
    finally:
        await redis.aclose()


async def _readyz(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    state: dict[str, Any] = (await client.get(url + "/readyz")).json()
    return state


async def _viewers(client: httpx.AsyncClient, url: str, n: int, within: float) -> None:
    """Until the front-end at ``url`` counts ``n`` viewers or more."""

    async def counted() -> bool:
        return bool((await _readyz(client, url))["viewers"] >= n)

    await poll(counted, f"{n} viewers counted", within, every=0.05)


async def test_departed_viewers_are_forgotten(slow_frontend: Proc, redis_url: str) -> None:
    fe = slow_frontend
    redis = connection.command_client(redis_url)
    event_log = EventLog(redis)
    sids = ["gone-" + secrets.token_hex(4) for _ in range(5)]
    try:
        for sid in sids:
            await event_log.append(sid, [{"type": "a"}], kind="feed")
        async with httpx.AsyncClient(timeout=10) as client:
            tasks = [
                asyncio.create_task(read_sse(client, fe.url + f"/v1/streams/{sid}/events"))
                for sid in sids
                for _ in range(8)
            ]
            await _viewers(client, fe.url, 40, 10)
            assert (await _readyz(client, fe.url))["streams"] == 5
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            state: dict[str, Any] = {}

            async def forgotten() -> bool:
                state.update(await _readyz(client, fe.url))
                return state["viewers"] == 0 and state["streams"] == 0

            await poll(forgotten, "viewers forgotten", 5, every=0.05, context=lambda: str(state))
        # The stream itself is untouched: viewers leaving never ends anything.
        info = await event_log.info(sids[0])
        assert info is not None and info.ended is None
    finally:
        await redis.aclose()


async def _counted(seen: list[int], n: int) -> bool:
    return len(seen) == n


async def _all_left(listener: PubSub, counts: dict[str, int]) -> bool:
    """Counts the next message on a stream's channel (an event, or a viewer count): true
    once a count says every viewer left."""
    message = await listener.get_message(timeout=1)
    if message is None or message["type"] != "message":
        return False  # none yet, or the confirmation of the subscription
    if not message["data"].startswith(b"0 0 - P\n"):
        counts["events"] += 1
        return False
    counts["viewer counts"] += 1
    return bool(message["data"].endswith(b"\n0"))


async def test_redis_commands_per_event_do_not_depend_on_viewers(tmp_path: Path) -> None:
    """Events are pushed: once its viewers are subscribed, a stream's events cost Redis
    one PUBLISH each (inside the append) and no read at all, for 1 viewer or 300, counted
    by Redis itself (INFO commandstats). Besides, the viewer count is published a few times
    as they all leave: coalesced, not once per viewer."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    url = server.start(reuse=False)
    fe = start_frontend(url, tmp_path, "frontend-count")
    redis = connection.command_client(url)
    event_log = EventLog(redis)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    calls: dict[int, dict[str, int]] = {}
    try:
        async with httpx.AsyncClient(timeout=30, transport=SSETransport(limits=limits)) as client:
            for viewers in (1, 300):
                sid = f"count-{viewers}"
                await event_log.append(sid, [{"type": "a"}], kind="feed")
                served: list[int] = []
                url_ = fe.url + f"/v1/streams/{sid}/events"
                started = functools.partial(served.append, 1)
                tasks = [
                    asyncio.create_task(read_sse(client, url_, started=started))
                    for _ in range(viewers)
                ]
                # Subscribed, and served the history: what a joining viewer reads (the
                # stream's seq, its first event) is read before the count starts.
                all_served = functools.partial(_counted, served, viewers)
                await poll(all_served, f"{viewers} viewer(s) served", 20, every=0.05)
                # What the channel carries besides events: the viewer count, which the
                # front-end publishes (coalesced) as viewers come and go.
                listener = redis.pubsub()
                await listener.subscribe(keys.push_channel(sid))
                async with commands_seen(url) as seen:
                    for i in range(50):
                        await event_log.append(sid, [{"type": "n", "i": i}], kind="feed")
                        await asyncio.sleep(0.01)
                    await event_log.append(sid, [{"type": "finish"}], kind="feed")
                    results = await asyncio.gather(*tasks)
                    assert all(r.ids == list(range(1, 53)) for r in results)
                    counts = {"events": 0, "viewer counts": 0}
                    all_left = functools.partial(_all_left, listener, counts)
                    await poll(all_left, "the viewers' leaving published", 20, every=0)
                await listener.aclose()
                # Only what touches this stream's keys: the front-end's own sweeps
                # (overdue jobs, webhooks) may read theirs in the window.
                calls[viewers] = {
                    name: len(seen.touching(sid, [name]))
                    for name in ("publish", "xread", "xrange", "xrevrange")
                } | counts
    finally:
        await redis.aclose()
        fe.stop()
        server.stop()
    print(f"Redis calls for 52 events: 1 viewer {calls[1]}, 300 viewers {calls[300]}")
    for viewers in (1, 300):
        assert calls[viewers]["events"] == 51, "one message per append"
        # Every PUBLISH is an event or a viewer count the listener saw. (A count of the
        # joins may be published just before the statistics were reset, and still seen.)
        assert 51 <= calls[viewers]["publish"] <= 51 + calls[viewers]["viewer counts"]
        # Viewers leaving together are counted in a few messages, not one each.
        assert calls[viewers]["viewer counts"] <= 3, calls[viewers]
        reads = sum(calls[viewers][n] for n in ("xread", "xrange", "xrevrange"))
        assert reads == 0, f"{viewers} viewer(s): nothing read from the log"


SWALLOWED_SIGTERM = """
import os, signal, sys
from broadcaster.cli import main
from broadcaster.http.server import exit_on_sigterm

exit_on_sigterm()
try:
    os.kill(os.getpid(), signal.SIGTERM)  # start-up's SystemExit, where Python drops it
    signal.pause()
except SystemExit:
    pass
print("the SIGTERM's SystemExit was swallowed; serving", flush=True)
main(["serve", "--port", sys.argv[1]])
"""


def test_a_sigterm_swallowed_during_start_up_still_stops_the_front_end(
    redis_url: str, tmp_path: Path
) -> None:
    """A SIGTERM during start-up raises SystemExit wherever the process is; inside a
    weakref callback Python prints "Exception ignored in" and goes on (seen once: a
    front-end then served until killed). The signal is also written down, and the server
    stops as soon as it has started."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    env |= {"REDIS_URL": redis_url, "BROADCASTER_EMBEDDED_REDIS_PORT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SWALLOWED_SIGTERM, str(free_port())],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"the front-end went on serving after the SIGTERM:\n{out}") from None
    assert "swallowed; serving" in out and "Application startup complete" in out, out
    assert "signal 15: draining open streams" in out, out
    assert proc.returncode == 0, out
