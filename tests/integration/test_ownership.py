"""A generation's life on a real Redis and real front-end processes: who may claim it
(one owner at a time, by its hold), what counts as an attempt (only a lost worker), a
start cut off between its steps (found and ended, its chat freed), and a chat submit sent
again after its answer ended (both answers kept). docs/reliability.md, "Deploys and
ownership".
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from broadcaster.chat import conversation
from broadcaster.chat.convert import parse_body, to_request, with_chat_id
from broadcaster.chat.records import Chats
from broadcaster.core import connection, keys
from broadcaster.core.embedded import EmbeddedRedis
from broadcaster.core.eventlog import EventLog
from broadcaster.generations.jobs import JobQueue
from broadcaster.generations.lifecycle import Claim, Generations, Held
from broadcaster.generations.overdue import STALLED_TEXT
from broadcaster.generations.request import Defaults
from broadcaster.generations.start import Admission, admit
from tests.support.polling import poll
from tests.support.procs import Deployment, Proc, advertise_providers, parse_sse, start_frontend

pytestmark = pytest.mark.anyio

REQUEST = {"prompt": "x", "provider": "anthropic", "model": "m", "max_tokens": 8}


def sid() -> str:
    return "own-" + secrets.token_hex(6)


@pytest.fixture
async def event_log(redis_url: str) -> Any:
    redis = connection.command_client(redis_url)
    yield EventLog(redis, ended_ttl=60, idle_ttl=600)
    await redis.aclose()


async def test_only_a_lost_worker_counts_and_a_live_one_keeps_its_generation(
    event_log: EventLog,
) -> None:
    s = sid()
    generations = Generations(event_log, lease_s=30)
    assert await generations.create(s, REQUEST)
    assert await generations.claim(s, "a") == Claim(0, 1, 0)
    # A second worker with a duplicate job, within a's lease: refused, nothing changes.
    with pytest.raises(Held):
        await generations.claim(s, "b")
    meta = await event_log.meta(s) or {}
    assert meta["owner"] == "a" and meta["attempt"] == "1"
    # a's writer repairs a loss: it takes its stream again, counting nothing.
    assert await generations.claim(s, "a", repair=True) == Claim(0, 1, 0)
    # A hold is refreshed only by the owner.
    await event_log.redis.hset(keys.meta_key(s), "held_at", 5)
    await generations.hold([s], "b")
    assert (await event_log.meta(s) or {})["held_at"] == "5"
    await generations.hold([s], "a")
    assert int((await event_log.meta(s) or {})["held_at"]) > 5
    # a stops (a deploy) and hands it back: no attempt, no lost worker, one hand-back.
    assert await generations.release(s, "a")
    assert await generations.claim(s, "b") == Claim(0, 2, 0)
    meta = await event_log.meta(s) or {}
    assert meta["handbacks"] == "1" and "lost" not in meta
    # b dies: once its hold lapsed, c's takeover counts one lost worker.
    await event_log.redis.hset(keys.meta_key(s), "held_at", 0)
    assert await generations.claim(s, "c") == Claim(0, 3, 1)


async def test_a_claim_sent_again_with_its_token_finds_itself(event_log: EventLog) -> None:
    """docs/reliability.md, "A claim whose reply is lost": the same claim again (its
    reply lost) is answered as it was made; another token of the same owner, or a claim
    after another worker took the generation, is not."""
    s = sid()
    generations = Generations(event_log, lease_s=30)
    assert await generations.create(s, REQUEST)
    assert await generations.claim(s, "a", token="t1") == Claim(0, 1, 0)
    assert await generations.claim(s, "a", token="t1") == Claim(0, 1, 0)  # counted once
    with pytest.raises(Held):  # a's own hold, but not this claim's: a duplicate job
        await generations.claim(s, "a", token="t2")
    with pytest.raises(Held):
        await generations.claim(s, "b", token="t1")  # someone else's claim is not b's
    # a person's decision: the run after it says so, sent again too
    await event_log.redis.hset(keys.meta_key(s), mapping={"held_at": 0, "resume": 1})
    decided = Claim(0, 1, 1, decided=True)
    assert await generations.claim(s, "b", token="t3") == decided
    assert await generations.claim(s, "b", token="t3") == decided
    # c takes it over once b's hold lapsed: b's claim sent that late is c's to refuse
    await event_log.redis.hset(keys.meta_key(s), "held_at", 0)
    assert await generations.claim(s, "c", token="t4") == Claim(0, 2, 2)
    with pytest.raises(Held):
        await generations.claim(s, "b", token="t3")
    meta = await event_log.meta(s) or {}
    assert (meta["owner"], meta["attempt"], meta["lost"]) == ("c", "2", "2")


class CutQueue(JobQueue):
    """A job queue whose job XADD fails: the fault between a start's steps."""

    async def enqueue(self, generation_id: str, provider: str = "anthropic") -> None:
        raise RedisConnectionError("injected: the connection dropped before the job's XADD")


@pytest.fixture(scope="module")
def quick_frontend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Proc]]:
    """Its own Redis (no worker: the providers are advertised) and a front-end whose
    sweeps come every second (queued timeout 4 s: a stalled start ends after 4 s)."""
    root = tmp_path_factory.mktemp("ownership")
    server = EmbeddedRedis(root / "redis", persistent=False)
    server.start(reuse=False)
    advertise_providers(server.url)
    proc = start_frontend(server.url, root, "frontend", {"BROADCASTER_QUEUED_TIMEOUT_SECONDS": "4"})
    try:
        yield server.url, proc
    finally:
        proc.stop()
        server.stop()


def user(text: str, mid: str) -> dict[str, Any]:
    return {"id": mid, "role": "user", "parts": [{"type": "text", "text": text}]}


async def test_a_start_cut_off_before_its_job_is_ended_and_frees_its_chat(
    quick_frontend: tuple[str, Proc],
) -> None:
    url, frontend = quick_frontend
    redis = connection.command_client(url)
    event_log = EventLog(redis, ended_ttl=60, idle_ttl=600)
    generations, chats = Generations(event_log), Chats(redis, 600)
    chat_id, generation = "chat-" + secrets.token_hex(6), sid()
    body = {"id": chat_id, "messages": [user("hi", "u1")], "trigger": "submit-message"}
    chat = parse_body(with_chat_id(body, new_id=sid))
    job = to_request(chat, Defaults())
    admission = Admission(None, "anthropic", 1000)
    try:
        admitted = await admit(JobQueue(redis), admission, job["provider"])
        # The chat submit's start: created, named by the chat, and then its XADD fails.
        with pytest.raises(RedisConnectionError):
            await conversation.start_answer(
                chats,
                generations,
                CutQueue(redis),
                admission,
                admitted,
                chat=chat,
                messages=body["messages"],
                record=None,
                job=job,
                generation=generation,
            )
        assert (await event_log.meta(generation) or {})["status"] == "queued"
        assert await redis.xlen(keys.jobs_key("anthropic")) == 0  # no job: nothing runs it
        async with httpx.AsyncClient(base_url=frontend.url, timeout=30) as client:
            again = {**body, "messages": [user("hello?", "u2")]}
            busy = await client.post("/v1/chat", json=again)
            assert busy.status_code == 409 and busy.json()["error"] == "chat_busy"

            async def ended() -> dict[str, str] | None:
                """Its meta once the sweep has ended it and then dropped its start's note
                (two steps: the test can look between them)."""
                meta = await event_log.meta(generation) or {}
                noted = await redis.zscore(keys.STARTING_KEY, generation) is not None
                return meta if meta.get("ended") and not noted else None

            meta = await poll(ended, "the front-end's sweep to end the cut-off start", 30)
            assert meta["status"] == "failed" and meta["error"] == STALLED_TEXT
            # The chat is free: the next submit starts its answer (queued: no worker).
            async with client.stream("POST", "/v1/chat", json=again) as resp:
                assert resp.status_code == 200
                assert resp.headers["x-generation-id"] != generation
    finally:
        await redis.aclose()
    assert "Traceback" not in frontend.log()


async def test_a_chat_sent_again_after_its_answer_keeps_both_answers(
    deployment: Deployment,
) -> None:
    """The same submit twice (a client that retried, having never seen the first answer):
    two answers, and ``/messages`` shows both; a regenerate still replaces the last."""
    base = deployment.frontends[0].url
    chat_id = "chat-" + secrets.token_hex(6)
    body = {
        "id": chat_id,
        "messages": [user("Tell me about streams", "u1")],
        "trigger": "submit-message",
        "max_tokens": 8,
    }
    answers = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for _ in range(2):
            resp = await client.post("/v1/chat", json=body)
            assert resp.status_code == 200, resp.text
            assert parse_sse(resp.content)[0][-1].data == "[DONE]"
            answers.append(resp.headers["x-generation-id"])
        listed = (await client.get(f"/v1/chat/{chat_id}/messages")).json()
        assert [(m["role"], m["id"]) for m in listed["messages"]] == [
            ("user", "u1"),
            ("assistant", answers[0]),
            ("assistant", answers[1]),
        ]
        for message in listed["messages"][1:]:
            assert [p["type"] for p in message["parts"]] == ["step-start", "text"]
            assert message["parts"][1]["text"]
        # The AI SDK's usual submit (the whole chat) and a regenerate are as before.
        regenerate = {**body, "trigger": "regenerate-message", "messageId": answers[1]}
        resp = await client.post("/v1/chat", json=regenerate)
        assert resp.status_code == 200, resp.text
        third = resp.headers["x-generation-id"]
        listed = (await client.get(f"/v1/chat/{chat_id}/messages")).json()
    assert [(m["role"], m["id"]) for m in listed["messages"]] == [
        ("user", "u1"),
        ("assistant", third),
    ]
