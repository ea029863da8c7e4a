"""The healthy readers beside the hostile publishers: each interface (the SSE route,
``/v1/events`` by stream and by prefix, the Durable Streams catch-up, long-poll and SSE,
and a chat client) read as a real network client on a thread of its own."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from broadcaster.auth import tokens
from tests.support.hostile_requests import ADMIN, SECRET
from tests.support.hostile_world import World
from tests.support.procs import parse_sse

# --- the healthy readers ---


@dataclass
class Reader:
    """One healthy reader: what it got, and what went wrong."""

    name: str
    streams: list[str]
    got: dict[str, list[tuple[Any, Any]]] = field(default_factory=lambda: defaultdict(list))
    seqs: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    finished: bool = False

    def error(self, message: str) -> None:
        if len(self.errors) < 8:
            self.errors.append(message[:400])


def _typed(obj: Any) -> tuple[Any, Any]:
    if isinstance(obj, dict):
        return obj.get("type"), obj.get("n")
    return ("<not an object>", repr(obj)[:80])


async def _frames(resp: httpx.Response) -> Any:
    """The SSE blocks of a streaming response, as ``parse_sse`` reads them."""
    buf = b""
    async for chunk in resp.aiter_raw():
        buf += chunk
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            continue
        block, buf = buf[: cut + 2], buf[cut + 2 :]
        events, _, _ = parse_sse(block)
        for e in events:
            yield e


async def read_sse_route(client: httpx.AsyncClient, r: Reader, token: str) -> None:
    sid = r.streams[0]
    async with client.stream(
        "GET", f"/v1/streams/{sid}/events", headers={"authorization": f"Bearer {token}"}
    ) as resp:
        r.connected.set()
        if resp.status_code != 200:
            r.error(f"status {resp.status_code}: {(await resp.aread())[:200]!r}")
            return
        async for e in _frames(resp):
            if e.data == "[DONE]":
                r.finished = True
                return
            try:
                r.got[sid].append(_typed(json.loads(e.data)))
            except ValueError:
                r.error(f"a frame that is not JSON: {e!r}")
                continue
            if e.id is None or not e.id.split(".")[0].isdigit():
                r.error(f"a frame without a seq in its id: {e!r}")
            else:
                r.seqs[sid].append(int(e.id.split(".")[0]))
        r.error("the response ended without [DONE]")


async def read_dashboard(client: httpx.AsyncClient, r: Reader, query: str, token: str) -> None:
    """``/v1/events``: named streams end the response; a prefix does not, so this returns
    once every healthy stream's terminal event came."""
    ended: set[str] = set()
    async with client.stream(
        "GET", f"/v1/events?{query}", headers={"authorization": f"Bearer {token}"}
    ) as resp:
        r.connected.set()
        if resp.status_code != 200:
            r.error(f"status {resp.status_code}: {(await resp.aread())[:200]!r}")
            return
        async for e in _frames(resp):
            if e.event is None:
                continue
            try:
                data = json.loads(e.data)
                stream, seq, event = data["stream"], data["seq"], data["event"]
            except (ValueError, KeyError, TypeError):
                r.error(f"a frame that is not {{stream, seq, event}}: {e!r}")
                continue
            if stream not in r.streams:
                r.error(f"an event of a stream it does not follow: {stream!r} {data!r}")
                continue
            r.got[stream].append(_typed(event))
            r.seqs[stream].append(seq)
            if _typed(event)[0] == "finish":
                ended.add(stream)
                if ended == set(r.streams):
                    r.finished = True
                    return
        r.error(f"the response ended before the end of {sorted(set(r.streams) - ended)}")


async def read_durable(client: httpx.AsyncClient, r: Reader, mode: str, token: str) -> None:
    """A Durable Streams reader: catch-up pages, long-polls or one SSE response, to the
    stream's closure."""
    path = r.streams[0]
    headers = {"authorization": f"Bearer {token}"}
    url = f"/v1/stream/{path}"
    if mode == "sse":
        async with client.stream(
            "GET", url, params={"offset": "-1", "live": "sse"}, headers=headers
        ) as resp:
            r.connected.set()
            if resp.status_code != 200:
                r.error(f"status {resp.status_code}: {(await resp.aread())[:200]!r}")
                return
            async for e in _frames(resp):
                try:
                    data = json.loads(e.data)
                except ValueError:
                    r.error(f"an SSE event that is not JSON: {e!r}")
                    continue
                if e.event == "data":
                    r.got[path] += [_durable_item(m) for m in data]
                elif e.event == "control" and data.get("streamClosed"):
                    r.finished = True
                    return
            r.error("the SSE response ended before streamClosed")
        return
    offset, cursor = "-1", None
    while True:
        params = {"offset": offset}
        if mode == "long-poll":
            params["live"] = "long-poll"
            if cursor:
                params["cursor"] = cursor
        resp = await client.get(url, params=params, headers=headers)
        r.connected.set()
        if resp.status_code not in (200, 204):
            r.error(f"status {resp.status_code}: {resp.text[:200]}")
            return
        if resp.status_code == 200:
            r.got[path] += [_durable_item(m) for m in resp.json()]
        offset = resp.headers.get("stream-next-offset", offset)
        cursor = resp.headers.get("stream-cursor", cursor)
        up_to_date = resp.headers.get("stream-up-to-date") == "true"
        if up_to_date and resp.headers.get("stream-closed") == "true":
            r.finished = True
            return
        if mode == "catch-up" and up_to_date:
            await asyncio.sleep(0.2)


def _durable_item(message: Any) -> tuple[Any, Any]:
    """A message of a job feed read as a Durable Stream is its event; one of the healthy
    Durable Stream is ``{"n": k}``."""
    if isinstance(message, dict) and "type" not in message:
        return ("message", message.get("n"))
    return _typed(message)


@dataclass
class ChatClient:
    """Submits chats one after another until told to stop, reading each answer whole."""

    answers: int = 0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    async def run(self, client: httpx.AsyncClient, run: str) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            body = {
                "id": f"chat-{run}-{i}",
                "messages": [
                    {"id": "u1", "role": "user", "parts": [{"type": "text", "text": f"hello {i}"}]}
                ],
                "max_tokens": 8,
            }
            headers = {"authorization": f"Bearer {ADMIN}"}
            async with client.stream("POST", "/v1/chat", json=body, headers=headers) as resp:
                if resp.status_code != 200:
                    self.error(
                        f"chat {i}: status {resp.status_code}: {(await resp.aread())[:200]!r}"
                    )
                    return
                events = [e async for e in _frames(resp)]
            ids = [int(e.id.split(".")[0]) for e in events if e.id is not None]
            typed = [e for e in events if e.event is not None]
            if (
                ids != list(range(1, len(ids) + 1))
                or not typed
                or typed[-1].event != "finish"
                or events[-1].data != "[DONE]"
            ):
                self.error(f"chat {i}: not whole: {[(e.id, e.event) for e in events][:40]}")
                return
            self.answers += 1
            await asyncio.sleep(0.3)

    def error(self, message: str) -> None:
        self.errors.append(message[:400])


class Readers:
    """The healthy readers, on an event loop of their own on a thread."""

    def __init__(self, world: World) -> None:
        self.world = world
        feeds = world.healthy
        self.list: list[Reader] = [Reader(f"SSE route {sid}", [sid]) for sid in feeds]
        self.named = Reader("/v1/events?stream=", list(feeds))
        self.prefixed = Reader("/v1/events?prefix=", list(feeds))
        self.list += [self.named, self.prefixed]
        self.durable = []
        for path in (world.ds_path, feeds[0]):
            for mode in ("catch-up", "long-poll", "sse"):
                self.durable.append((Reader(f"Durable Streams {mode} of {path}", [path]), mode))
        self.list += [r for r, _ in self.durable]
        self.chat = ChatClient()
        self.crashed: list[str] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.thread = threading.Thread(target=self._run, name="healthy-readers", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        for r in self.list:
            if not r.connected.wait(max(0.0, deadline - time.monotonic())):
                raise AssertionError(f"{r.name} did not connect: {r.errors}")

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        w = self.world
        read = tokens.mint_token(SECRET, read=["*"], ttl_seconds=3600)
        timeout = httpx.Timeout(30, read=60)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(base_url=w.fe.url, timeout=timeout, limits=limits) as c:
            named = "&".join(f"stream={s}" for s in w.healthy)
            jobs = [
                *(read_sse_route(c, r, read) for r in self.list[:3]),
                read_dashboard(c, self.named, named, read),
                read_dashboard(c, self.prefixed, f"prefix={w.prefix}", read),
                *(read_durable(c, r, mode, read) for r, mode in self.durable),
                self.chat.run(c, w.run),
            ]
            self.tasks = [asyncio.create_task(self._guard(job)) for job in jobs]
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _guard(self, job: Any) -> None:
        try:
            await job
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # recorded: the check at the end names the reader
            self.crashed.append(f"{type(exc).__name__}: {exc}"[:400])

    def finish(self, seconds: float) -> None:
        """Wait for the readers to reach the end; cancel those that did not."""
        self.chat.stop.set()
        self.thread.join(seconds)
        if self.thread.is_alive() and self.loop is not None:
            for task in self.tasks:
                self.loop.call_soon_threadsafe(task.cancel)
            self.thread.join(10)
