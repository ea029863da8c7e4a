"""A cut answer continued on the OpenAI provider, in-process on a real Redis, with the
real ``openai`` SDK against the local Chat Completions server: by default with the
synthetic user turn after the partial assistant message; with
``continue_final_message`` (vLLM's, a setting saying the server offers it) the partial
message is sent last and continued in place (``add_generation_prompt: false``). Either
way the rest streams into the part the lost worker left open."""

from __future__ import annotations

import secrets
from typing import Any

import httpx2
import pytest

from broadcaster.core import connection, keys
from broadcaster.core.eventlog import EventLog
from broadcaster.generations.lifecycle import Generations
from tests.support import fake_openai as oai
from worker.attempt import Policy, run_generation
from worker.continuation import CONTINUE_PROMPT

pytestmark = pytest.mark.anyio

REQUEST = {"prompt": "tell me", "model": "gpt-test", "max_tokens": 50, "provider": "openai"}
SHOWN = [
    {"type": "start", "messageId": "m"},
    {"type": "start-step"},
    {"type": "text-start", "id": "t0"},
    {"type": "text-delta", "id": "t0", "delta": "The answer is"},
]


async def _continued(redis_url: str, in_place: bool) -> tuple[list[dict[str, Any]], Any]:
    import openai

    from worker.providers.openai import OpenAIProvider

    redis = connection.command_client(redis_url)
    log = EventLog(redis, ended_ttl=60, idle_ttl=600)
    gens = Generations(log)
    s = "oc-" + secrets.token_hex(6)
    try:
        assert await gens.create(s, REQUEST)
        assert await gens.claim(s, "lost-worker") is not None
        await redis.hset(keys.meta_key(s), "held_at", 0)  # its hold lapsed: a lost worker
        await log.append(s, SHOWN, kind="generation", expect_seq=0, owner="lost-worker")
        with oai.FakeOpenAIServer(api_key="test") as server:
            server.enqueue(oai.reply(text=[" forty", "-two."]))
            client = openai.AsyncOpenAI(
                api_key="test", base_url=server.base_url, max_retries=0, timeout=httpx2.Timeout(10)
            )
            provider = OpenAIProvider(10, client=client, continue_final_message=in_place)
            await run_generation(gens, provider, s, "worker-2", Policy(merge_s=0))
            await provider.aclose()
            body = server.requests[-1].body
        events = [e.json() async for page in log.read_after(s, 0) for e in page]
    finally:
        await redis.aclose()
    return events, body


@pytest.mark.parametrize("in_place", [False, True], ids=["user-turn", "continue-final-message"])
async def test_openai_continues_the_open_part(redis_url: str, in_place: bool) -> None:
    events, body = await _continued(redis_url, in_place)
    said = "".join(e["delta"] for e in events if e["type"] == "text-delta")
    assert said == "The answer is forty-two."
    types = [e["type"] for e in events]
    assert types.count("start") == types.count("text-start") == 1, types
    assert {e["id"] for e in events if e["type"].startswith("text-")} == {"t0"}
    partial = {"role": "assistant", "content": "The answer is"}
    if in_place:
        assert body["messages"][-1] == partial
        assert body["continue_final_message"] is True
        assert body["add_generation_prompt"] is False
    else:
        assert body["messages"][-2:] == [partial, {"role": "user", "content": CONTINUE_PROMPT}]
        assert "continue_final_message" not in body
