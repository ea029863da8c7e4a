"""The Python client, ``tail`` and the job-progress example, on real processes: a Redis
server and front-ends started by the test (uvicorn on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broadcaster import Publisher
from broadcaster.clients.stream_client import (
    ClientEvent,
    PublishRefused,
    ResumePointAhead,
    StreamClient,
    StreamNotFound,
    StreamUnavailable,
)
from broadcaster.clients.tail import Renderer
from tests.support.procs import ROOT, Proc, run_python, start_frontend

pytestmark = pytest.mark.anyio


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def frontend(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_frontend(redis_url, tmp_path_factory.mktemp("client"), "client-frontend")
    yield proc
    proc.stop()


async def test_every_event_once_when_the_frontend_is_killed_mid_stream(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "broadcaster.client")
    a = start_frontend(redis_url, tmp_path, "frontend-a")
    b = start_frontend(redis_url, tmp_path, "frontend-b")
    sid = new_id("killed")
    total = 300
    received: list[ClientEvent] = []
    try:
        async with (
            Publisher.from_url(redis_url) as pub,
            StreamClient([a.url, b.url], backoff_base=0.05, max_retries=20) as client,
        ):
            await pub.publish(sid, {"type": "data-n", "i": 0})
            first_half = asyncio.Event()

            async def produce() -> None:
                for i in range(1, total):
                    await pub.publish(sid, {"type": "data-n", "i": i})
                    if i == total // 2:
                        await first_half.wait()  # the rest comes after the kill
                    await asyncio.sleep(0.002)
                await pub.publish(sid, {"type": "finish", "finishReason": "stop"})

            async def consume() -> None:
                async for event in client.events(sid):
                    received.append(event)
                    if len(received) == total // 3:
                        a.stop(signal.SIGKILL)
                        first_half.set()

            await asyncio.wait_for(asyncio.gather(produce(), consume()), 60)
    finally:
        a.stop()
        b.stop()
    assert a.popen.returncode == -signal.SIGKILL
    assert [e.id for e in received] == list(range(1, total + 2))
    assert [e.data["i"] for e in received[:-1]] == list(range(total))
    assert received[-1].type == "finish" and received[-1].terminal
    # the rest came from the other front-end, after one reconnect
    moves = [r.message for r in caplog.records if r.name == "broadcaster.client"]
    assert len(moves) == 1 and f"retrying on {b.url}" in moves[0], moves


async def test_ends_at_terminal_and_refuses_what_retrying_cannot_fix(frontend: Proc) -> None:
    sid = new_id("ended")
    async with StreamClient(frontend.url, max_retries=2) as client:
        assert await client.publish(sid, {"type": "data-progress", "pct": 50}) == 1
        last = await client.publish(
            sid, [{"type": "data-progress", "pct": 100}, {"type": "abort", "reason": "stop"}]
        )
        assert last == 3
        events = [e async for e in client.events(sid)]
        assert [(e.id, e.type) for e in events] == [
            (1, "data-progress"),
            (2, "data-progress"),
            (3, "abort"),
        ]
        assert events[1].data == {"type": "data-progress", "pct": 100}
        assert [e.id async for e in client.events(sid, last_event_id=1)] == [2, 3]
        assert [e async for e in client.events(sid, last_event_id=3)] == []  # 204
        assert (await client.wait(sid)).data == {"type": "abort", "reason": "stop"}
        assert (await client.wait(sid, last_event_id=3)).type == "abort"
        with pytest.raises(ResumePointAhead) as ahead:
            _ = [e async for e in client.events(sid, last_event_id=7)]
        assert ahead.value.status == 409 and ahead.value.last_event_id == 3
        assert "past the newest event" in ahead.value.message
        with pytest.raises(StreamNotFound):
            _ = [e async for e in client.events(new_id("missing"))]
        with pytest.raises(PublishRefused) as refused:
            await client.publish(sid, {"type": "data-progress"})
        assert refused.value.last_event_id == 3
    # nothing listens there: bounded retries end in StreamUnavailable
    async with StreamClient("http://127.0.0.1:9", backoff_base=0.01, max_retries=2) as client:
        with pytest.raises(StreamUnavailable):
            _ = [e async for e in client.events(sid)]


async def test_503_with_retry_after_is_retried(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "broadcaster.client")
    fe = start_frontend(redis_url, tmp_path, "busy", {"BROADCASTER_MAX_CONNECTIONS": "1"})
    held, wanted = new_id("held"), new_id("wanted")
    try:
        async with (
            Publisher.from_url(redis_url) as pub,
            httpx.AsyncClient(timeout=30) as http,
            StreamClient(fe.url, backoff_base=0.01) as client,
        ):
            await pub.publish(held, {"type": "data-n"})  # open: its viewer stays connected
            await pub.publish(wanted, [{"type": "data-n"}, {"type": "finish"}])
            async with http.stream("GET", f"{fe.url}/v1/streams/{held}/events") as resp:
                assert resp.status_code == 200
                r = await http.get(f"{fe.url}/v1/streams/{wanted}/events")
                assert r.status_code == 503
                retry_after = float(r.headers["retry-after"])
                started = time.monotonic()
                reader = asyncio.create_task(client.wait(wanted))
                await asyncio.sleep(0.3)
                assert not reader.done()
            # the held viewer is gone: the next attempt gets through
            final = await asyncio.wait_for(reader, 15)
            elapsed = time.monotonic() - started
    finally:
        fe.stop()
    assert final.id == 2 and final.type == "finish"
    assert elapsed >= retry_after  # waited as told, not the 10 ms backoff
    moves = [r.message for r in caplog.records if r.name == "broadcaster.client"]
    assert len(moves) == 1 and "503 this front-end is at its connection limit" in moves[0]


async def run_tail(*args: str) -> tuple[int | None, str, str]:
    done = await asyncio.to_thread(run_python, ["-m", "broadcaster", "tail", *args], 30, cwd=ROOT)
    return done.returncode, done.stdout, done.stderr


async def test_tail_prints_a_feed_live_and_exits_by_its_end(frontend: Proc, redis_url: str) -> None:
    sid = new_id("tail")
    words = ["Hello", ", ", "wor", "ld", "!"]
    async with Publisher.from_url(redis_url) as pub:
        await pub.publish(sid, [{"type": "start"}, {"type": "text-start", "id": "t0"}])
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "broadcaster", "tail", sid, "--url", frontend.url),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        async with httpx.AsyncClient(timeout=5) as http:  # the rest comes while tail follows
            while (await http.get(frontend.url + "/readyz")).json()["viewers"] < 1:
                assert proc.returncode is None
                await asyncio.sleep(0.05)
        for w in words:
            await pub.publish(sid, {"type": "text-delta", "id": "t0", "delta": w})
            await asyncio.sleep(0.05)
        await pub.publish(
            sid,
            [
                {"type": "text-end", "id": "t0"},
                {"type": "data-progress", "data": {"pct": 100}},
                {"type": "tool-input-available", "toolCallId": "c1", "toolName": "f", "input": {}},
                {
                    "type": "finish",
                    "finishReason": "stop",
                    "messageMetadata": {"usage": {"inputTokens": 3, "outputTokens": 5}},
                },
            ],
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    assert out.decode() == (
        "Hello, world!\n"
        '[data-progress] {"pct":100}\n'
        "[tool] f({})\n"
        "[finish] stop, 3 input / 5 output tokens\n"
    )

    # from a resume point; an error ends with status 1
    sid = new_id("tail-error")
    async with Publisher.from_url(redis_url) as pub:
        await pub.publish(
            sid,
            [
                {"type": "text-delta", "id": "t0", "delta": "skipped"},
                {"type": "text-delta", "id": "t0", "delta": "partial"},
                {"type": "error", "errorText": "overloaded"},
            ],
        )
    missing = new_id("missing")
    runs = await asyncio.gather(
        run_tail(sid, "--url", frontend.url, "--from", "1"),
        run_tail(sid, "--url", frontend.url, "--from", "3"),  # 204: nothing left to show
        run_tail(missing, "--url", frontend.url),
        run_tail(sid, "--url", frontend.url, "--from", "9"),
    )
    assert runs[0] == (1, "partial\n[error] overloaded\n", "")
    assert runs[1] == (1, "", "")
    assert runs[2][:2] == (2, "") and f"tail: {missing}: 404: no stream" in runs[2][2]
    assert runs[3][:2] == (2, "") and "409: resume point 9 is past" in runs[3][2]


@pytest.mark.parametrize("via", ["http", "redis"])
def test_job_progress_example_runs_to_completion(frontend: Proc, redis_url: str, via: str) -> None:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),  # as in a checkout; the script's own folder is examples/
        "BROADCASTER_URL": frontend.url,
    }
    env.pop("REDIS_URL", None)
    if via == "redis":
        env["REDIS_URL"] = redis_url
    r = subprocess.run(
        [sys.executable, "examples/job_progress.py", "--steps", "5", "--delay", "0.05"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].endswith("via Redis" if via == "redis" else f"via {frontend.url}")
    assert [line.split()[-3] for line in lines[1:-1]] == ["0%", "20%", "40%", "60%", "80%", "100%"]
    assert lines[-1].endswith("ended: finish")


def test_tail_renders_reasoning_tools_and_data_parts_one_line_each() -> None:
    parts: list[dict[str, object]] = [
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "r0"},
        {"type": "reasoning-delta", "id": "r0", "delta": "think "},
        {"type": "reasoning-delta", "id": "r0", "delta": "more"},
        {"type": "reasoning-end", "id": "r0"},
        {"type": "text-delta", "id": "t0", "delta": "Hi"},
        {"type": "tool-input-start", "toolCallId": "c1", "toolName": "get"},
        {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": '{"q":'},
        {"type": "tool-input-available", "toolCallId": "c1", "toolName": "get", "input": {"q": 1}},
        {"type": "tool-output-available", "toolCallId": "c1", "output": {"n": 2}},
        {"type": "tool-output-error", "toolCallId": "c2", "errorText": "tool get timed out"},
        {"type": "data-retry", "data": {"attempt": 2, "reason": "overloaded"}},
        {"type": "text-delta", "id": "t0", "delta": "again"},
        {"type": "abort", "reason": "cancelled"},
    ]
    plain, dim = io.StringIO(), io.StringIO()
    for out, color in ((plain, False), (dim, True)):
        renderer = Renderer(out, color=color)
        for seq, part in enumerate(parts, 1):
            renderer.render(ClientEvent(seq, str(part["type"]), part))
    assert plain.getvalue() == (
        "[reasoning] think more\n"
        "Hi\n"
        '[tool] get({"q":1})\n'
        '[tool output] {"n":2}\n'
        "[tool error] tool get timed out\n"
        '[data-retry] {"attempt":2,"reason":"overloaded"}\n'
        "again\n"
        "[abort] cancelled\n"
    )
    assert dim.getvalue().startswith("\x1b[2mthink \x1b[0m\x1b[2mmore\x1b[0m\nHi\n")
