"""Knowing where you are (docs/resuming.md): a viewer that asks (``?caught_up=1``) is sent
one transient ``data-caught-up`` chunk when its replay reaches the live tail, and keepalives
that carry the tail's seq (``: keepalive <seq>``), which the AI SDK's own parser takes in
its stride; and a front-end that drains at SIGTERM ends each open response with a jittered
``retry:`` and ``: draining <ms>``, after which each viewer resumes elsewhere with
``Last-Event-ID`` and loses nothing.

Real processes, one stack for the module: a Redis of its own and two front-ends (uvicorn,
keepalives every half second); the events are appended to Redis as a producer does. The
drain test stops the first front-end: it runs last.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from broadcaster.clients.publisher import Publisher
from tests.support import node_host
from tests.support.polling import wait_for
from tests.support.procs import ROOT, Proc, parse_sse
from tests.support.stacks import Stack, start_stack

READ = ROOT / "tests" / "clients" / "workflow" / "read.mjs"
KEEPALIVE = re.compile(rb"\n: keepalive (\d+)\n\n")
FAREWELL = re.compile(rb"retry: (\d+)\n: draining (\d+)\n\n$")
DRAIN_MIN, DRAIN_WINDOW = 500, 4000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("marks")
    env = {
        "BROADCASTER_KEEPALIVE_SECONDS": "0.5",
        "BROADCASTER_DRAIN_RETRY_MS": str(DRAIN_MIN),
        "BROADCASTER_DRAIN_WINDOW_MS": str(DRAIN_WINDOW),
    }
    s = start_stack(tmp, "marks", None, frontend_env=env, frontends=2)
    try:
        yield s
    finally:
        s.stop()


def publish(stack: Stack, stream: str, events: list[dict[str, Any]]) -> int:
    async def run() -> int:
        pub = Publisher.from_url(stack.redis.url)
        try:
            return await pub.publish(stream, events)
        finally:
            await pub.aclose()

    return asyncio.run(run())


def deltas(n: int, first: int = 0) -> list[dict[str, Any]]:
    return [{"type": "text-delta", "id": "t", "delta": f"w{i} "} for i in range(first, first + n)]


OPENING = [{"type": "start"}, {"type": "start-step"}, {"type": "text-start", "id": "t"}]
CLOSING = [{"type": "text-end", "id": "t"}, {"type": "finish-step"}, {"type": "finish"}]


def viewers(proc: Proc) -> int:
    try:
        count: int = httpx.get(f"{proc.url}/readyz", timeout=2).json()["viewers"]
    except httpx.HTTPError:
        return -1
    return count


def read_until(
    chunks: Iterator[bytes], pattern: re.Pattern[bytes], seen: bytearray
) -> re.Match[bytes]:
    """Read until ``pattern`` is in what was read; at most 100 more chunks (keepalives
    come every half second: nothing the test waits for takes that long)."""
    for _, chunk in zip(range(100), chunks, strict=False):
        seen += chunk
        found = pattern.search(bytes(seen))
        if found:
            return found
    raise AssertionError(f"no {pattern.pattern!r} in:\n{bytes(seen)[-2000:]!r}")


def test_a_viewer_that_asks_is_told_when_it_caught_up_and_the_tail_in_keepalives(
    stack: Stack,
) -> None:
    publish(stack, "marks-1", [*OPENING, *deltas(5)])  # seqs 1..8
    url = f"{stack.frontend.url}/v1/streams/marks-1/events"
    seen = bytearray()
    with httpx.stream("GET", f"{url}?caught_up=1", timeout=30) as response:
        live = response.iter_raw()
        assert read_until(live, KEEPALIVE, seen).group(1) == b"8"
        publish(stack, "marks-1", deltas(2, 5))  # 9, 10
        assert read_until(live, re.compile(rb"\n: keepalive 10\n\n"), seen)
        publish(stack, "marks-1", CLOSING)
        read_until(live, re.compile(rb"data: \[DONE\]\n\n$"), seen)
    events, _, _ = parse_sse(bytes(seen))
    marks = [e for e in events if e.event == "data-caught-up"]
    assert len(marks) == 1, events  # once, though the viewer was caught up again and again
    mark = marks[0]
    assert mark.id is None  # no event of the stream: Last-Event-ID stays the last event's
    assert json.loads(mark.data) == {
        "type": "data-caught-up",
        "data": {"seq": 8},
        "transient": True,
    }
    ids = [int(e.id.partition(".")[0]) for e in events if e.id is not None]
    assert ids == list(range(1, 14))
    assert events.index(mark) == 8  # right after event 8, the tail when it connected
    # A viewer that did not ask: plain pings, no mark (and served by the fast path).
    with httpx.stream("GET", url, timeout=30) as plain:
        body = b"".join(plain.iter_raw())
    assert b"data-caught-up" not in body and b"keepalive" not in body


def test_the_ai_sdks_parser_takes_the_mark_and_the_keepalives(stack: Stack) -> None:
    if shutil.which("node") is None or not (READ.parent / "node_modules").is_dir():
        pytest.fail("needs node >= 20 and npm ci --prefix tests/clients/workflow", pytrace=False)
    publish(stack, "marks-2", [*OPENING, *deltas(3)])
    before = viewers(stack.frontend)
    url = f"{stack.frontend.url}/v1/streams/marks-2/events?caught_up=1"
    reader = node_host.start(READ, [url])
    try:
        wait_for("the SDK's viewer", lambda: viewers(stack.frontend) > before, context=stack.logs)
        # Silence for two keepalives' time, so that the stream the SDK parses holds them
        # (and the mark) before its end: a pause, not a measure.
        time.sleep(1.2)
        publish(stack, "marks-2", CLOSING)
        out, err = reader.communicate(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.communicate()
    assert reader.returncode == 0, err
    read = json.loads(out.strip().splitlines()[-1])
    assert read["text"] == "w0 w1 w2 "
    # The mark passed the SDK's chunk schema (a transient data part: in no message).
    assert read["chunk_types"].count("data-caught-up") == 1, read["chunk_types"]
    assert read["part_types"] == ["step-start", "text"]


async def _watch(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> bytes:
    async with client.stream("GET", url, headers=headers) as r:
        assert r.status_code == 200, r.status_code
        return b"".join([chunk async for chunk in r.aiter_raw()])


def test_a_draining_front_end_spreads_its_viewers_and_they_lose_nothing(stack: Stack) -> None:
    n = 8
    publish(stack, "marks-3", [*OPENING, *deltas(4)])  # 1..7
    first, second = stack.frontends
    url = "/v1/streams/marks-3/events"

    async def run() -> list[bytes]:
        async with httpx.AsyncClient(timeout=30) as client:
            tasks = [asyncio.create_task(_watch(client, first.url + url, {})) for _ in range(n)]
            await asyncio.to_thread(
                wait_for, "every viewer", lambda: viewers(first) >= n, context=stack.logs
            )
            stopped = await asyncio.to_thread(first.stop, signal.SIGTERM)
            assert stopped == 0, first.log()[-3000:]  # a clean exit
            return list(await asyncio.gather(*tasks))

    bodies = asyncio.run(run())
    publish(stack, "marks-3", [*deltas(2, 4), *CLOSING])  # 8..12, while they are away
    retries = []
    for body in bodies:
        end = FAREWELL.search(body)
        assert end is not None, body[-200:]
        assert end.group(1) == end.group(2)
        retries.append(int(end.group(1)))
        assert DRAIN_MIN <= retries[-1] <= DRAIN_MIN + DRAIN_WINDOW
    assert len(set(retries)) > 1, retries  # spread, not all at once

    async def again() -> list[bytes]:
        async with httpx.AsyncClient(timeout=30) as client:
            resumes = []
            for body in bodies:
                events, _, _ = parse_sse(body)
                last = [e.id for e in events if e.id is not None][-1]
                resumes.append(_watch(client, second.url + url, {"Last-Event-ID": last or ""}))
            return list(await asyncio.gather(*resumes))

    for body, rest in zip(bodies, asyncio.run(again()), strict=True):
        events = parse_sse(body)[0] + parse_sse(rest)[0]
        ids = [int(e.id.partition(".")[0]) for e in events if e.id is not None]
        assert ids == list(range(1, 13))  # each event once, in order
