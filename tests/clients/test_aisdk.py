"""A generation read by the Vercel AI SDK's own client code: tests/clients/aisdk/read.mjs.

The stack is real processes: a Redis server of the test's own, a front-end and a worker
with ``WORKER_PROVIDERS=anthropic,openai`` whose ``ANTHROPIC_BASE_URL`` and
``OPENAI_BASE_URL`` are the local fake Anthropic and OpenAI servers, each scripted to answer
with thinking (signed by Anthropic; vLLM's ``reasoning_content`` for OpenAI), text and a
tool call. Each provider's generation is read the same way. The
script reads ``GET /v1/streams/{id}/events`` the way ``useChat({ resume: true })`` does
(``DefaultChatTransport.reconnectToStream``, which validates every chunk against the SDK's
``uiMessageChunkSchema``) and assembles the message with ``readUIMessageStream``. The
message the SDK built must hold exactly the reasoning, text and tool call of the stream, and
the reasoning part of the Anthropic one the signature in its ``providerMetadata``, as the
AI SDK's own Anthropic provider leaves it there to send back.

Needs node >= 20 and the npm packages of tests/clients/aisdk
(``npm ci --prefix tests/clients/aisdk``);
without them the test fails and says so. It never skips.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from broadcaster.core.embedded import EmbeddedRedis, ServerNotFound
from broadcaster.core.events import Usage
from tests.support import fake_openai as oai
from tests.support import node_host
from tests.support.aisdk import AISDK_DIR, missing_prerequisites
from tests.support.fake_anthropic import FakeAnthropicServer, message, text, thinking, tool_use
from tests.support.procs import Proc, parse_sse, start_frontend, start_worker

SCRIPT = AISDK_DIR / "read.mjs"
MODEL = "claude-aisdk-test"
REASONING = ["Let me ", "think ", "about <it>."]
CHUNKS = ["Hé", "llo, ", "wörld 🙂\n", "  spaced  ", '"quoted" end.']
FRAGMENTS = ['{"city"', ': "Par', 'is", "days"', ": 3, ", '"units": ["C"]}']
TOOL_INPUT = {"city": "Paris", "days": 3, "units": ["C"]}


def _read_with_sdk(url: str, *args: str) -> tuple[int, str, str]:
    return node_host.run(SCRIPT, [url, *args], timeout=90)


def _sdk_message(url: str, logs: list[Proc], *args: str) -> dict[str, Any]:
    code, out, err = _read_with_sdk(url, *args)
    proc_logs = "\n".join(f"{p.name} log:\n{p.log()[-3000:]}" for p in logs)
    assert code == 0, f"read.mjs exited with {code}\nstderr:\n{err}\nstdout:\n{out}\n{proc_logs}"
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _wait_completed(client: httpx.Client, base: str, gid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        st: dict[str, Any] = client.get(f"{base}/v1/generations/{gid}").json()
        if st["status"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


SIGNATURE = "sig-aisdk-1"


def _script_fakes(anth: FakeAnthropicServer, srv: oai.FakeOpenAIServer) -> None:
    anth.enqueue(
        message(
            [
                thinking(REASONING, signature=SIGNATURE),
                text(CHUNKS),
                tool_use("toolu_01aisdk", "get_weather", FRAGMENTS),
            ],
            input_tokens=31,
            output_tokens=57,
            stop_reason="tool_use",
            chunk_delay=0.03,  # slow enough for the first read to overlap the stream
        )
    )
    call = oai.streamed_call("toolu_01aisdk", "get_weather", FRAGMENTS)
    script = oai.reply(
        reasoning=REASONING,
        text=CHUNKS,
        tools=[call],
        prompt_tokens=31,
        completion_tokens=57,
        reasoning_tokens=0,  # as Anthropic's, which counts no reasoning apart
    )
    srv.enqueue([step for frame in script for step in (oai.delay(0.03), frame)])


def test_the_ai_sdk_assembles_the_generation(tmp_path: Path) -> None:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("the AI SDK test needs:\n  " + "\n  ".join(missing), pytrace=False)

    redis = EmbeddedRedis(tmp_path / "redis", persistent=False)
    try:
        redis.start(reuse=False)
    except ServerNotFound as exc:
        pytest.fail(f"this test needs a Redis server: {exc}", pytrace=False)
    procs: list[Proc] = []
    started = time.monotonic()
    runs: dict[str, dict[str, Any]] = {}
    with FakeAnthropicServer(api_key="test") as anth, oai.FakeOpenAIServer(api_key="test") as srv:
        _script_fakes(anth, srv)
        try:
            frontend = start_frontend(redis.url, tmp_path, "frontend")
            procs.append(frontend)
            env = {
                "WORKER_PROVIDERS": "anthropic,openai",
                "ANTHROPIC_BASE_URL": anth.base_url,
                "ANTHROPIC_API_KEY": "test",
                "OPENAI_BASE_URL": srv.base_url,
                "OPENAI_API_KEY": "test",
            }
            procs.append(start_worker(redis.url, tmp_path, "worker", env))
            with httpx.Client(timeout=30) as client:
                for provider in ("anthropic", "openai"):
                    runs[provider] = _read_both_ways(client, frontend.url, provider, procs)
        finally:
            for p in reversed(procs):
                p.stop()
            redis.stop()
        assert anth.errors == [] and srv.errors == []
    print(f"\nAI SDK run: {time.monotonic() - started:.1f} s")

    for provider, run in runs.items():
        _check(provider, run)


def _read_both_ways(
    client: httpx.Client, base: str, provider: str, procs: list[Proc]
) -> dict[str, Any]:
    body = {"prompt": "Weather in Paris?", "model": MODEL, "max_tokens": 300, "provider": provider}
    created = client.post(f"{base}/v1/generations", json=body)
    assert created.status_code == 202, created.text
    gid = created.json()["id"]
    events_url = base + created.json()["events_url"]
    # Read live (the SDK starts before or while the worker streams) ...
    live = _sdk_message(events_url, procs)
    st = _wait_completed(client, base, gid)
    # ... and replayed after the end, as useChat's resume does after a reload.
    replay = _sdk_message(events_url, procs)
    raw = client.get(events_url).content
    after_end = _sdk_message(events_url, procs, "--last-event-id", str(st["last_event_id"]))
    return {"gid": gid, "st": st, "live": live, "replay": replay, "raw": raw, "end": after_end}


def _check(provider: str, run: dict[str, Any]) -> None:
    st, gid = run["st"], run["gid"]
    assert st["status"] == "completed", (provider, st)
    assert st["text"] == "".join(CHUNKS)

    events = [e for e in parse_sse(run["raw"])[0] if e.event is not None]
    assert events[-1].event == "finish"
    wire_text = "".join(e.json()["delta"] for e in events if e.event == "text-delta")
    wire_reasoning = "".join(e.json()["delta"] for e in events if e.event == "reasoning-delta")
    wire_tool = next(e.json() for e in events if e.event == "tool-input-available")
    assert wire_text == "".join(CHUNKS)
    assert wire_reasoning == "".join(REASONING)
    assert wire_tool["input"] == TOOL_INPUT
    signed = {"anthropic": {"signature": SIGNATURE}} if provider == "anthropic" else None

    for name, sdk in (("live", run["live"]), ("replay", run["replay"])):
        where = (provider, name)
        assert sdk["status"] == 200, (where, sdk)
        assert sdk["ui_message_stream_header"] == "v1", (where, sdk)
        assert sdk["done"] is True, (where, "the body did not end with data: [DONE]")
        # every event of the stream went through the SDK's schema, none was dropped
        assert sdk["chunk_types"] == [e.event for e in events], where
        assert sdk["message_id"] == gid, (where, sdk["message_id"])
        assert sdk["role"] == "assistant", where
        assert sdk["part_types"] == ["step-start", "reasoning", "text", "tool-get_weather"], (
            where,
            sdk["part_types"],
        )
        assert sdk["text"] == wire_text == st["text"], where
        assert sdk["text_parts"] == [{"text": wire_text, "state": "done"}], where
        assert sdk["reasoning"] == wire_reasoning, where
        assert sdk["reasoning_parts"] == [
            {"text": wire_reasoning, "state": "done", "providerMetadata": signed}
        ], where
        assert sdk["tools"] == [
            {
                "toolCallId": "toolu_01aisdk",
                "toolName": "get_weather",
                "type": "tool-get_weather",
                "input": TOOL_INPUT,
                "state": "input-available",
            }
        ], where
        assert sdk["metadata"] == {
            "model": MODEL,
            "usage": Usage(31, 57).ai_sdk(),
        }, where

    # Resuming from the terminal event: 204, which the SDK takes as "nothing to resume".
    assert run["end"] == {"status": 204, "message": None}
