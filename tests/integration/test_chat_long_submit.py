"""A submit of one message to a long chat, on a real front-end, worker (the fake
Anthropic server) and Redis: the record keeps each message's model turns beside it, the
job names them rather than carrying the chat, and the worker reads them back, so the
model gets every earlier turn, in order. A seeded chat, an edit far back and a
regenerate on that layout (one of an answer far back: the chat read whole, the job
carrying it); a job of the previous shape (the whole request in it) is still run as it
stands; one whose turns the chat no longer holds ends with an error. A front-end set to
copy the chat into the job (``BROADCASTER_CHAT_JOB_HISTORY=copy``, while workers of the
previous version may run) stores the whole request, as that version did."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis as redis_sync

from broadcaster.core import keys
from tests.support.anthropic_scripts import message, text
from tests.support.polling import wait_for
from tests.support.stacks import Stack, anthropic_stack

TURNS = 150


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with anthropic_stack(tmp_path_factory.mktemp("long"), {}, worker=False) as s:
        s.add_worker()
        yield s


def ui(role: str, words: str, mid: str) -> dict[str, Any]:
    return {"id": mid, "role": role, "parts": [{"type": "text", "text": words}]}


def seeded(stack: Stack, turns: int) -> tuple[str, list[dict[str, Any]]]:
    """A chat of ``turns`` turns, seeded (``PUT /messages``)."""
    chat = "long-" + secrets.token_hex(6)
    history = []
    for i in range(turns):
        history += [ui("user", f"q{i}", f"u{i}"), ui("assistant", f"a{i}", f"a{i}")]
    put = httpx.put(f"{stack.url}/v1/chat/{chat}/messages", json={"messages": history})
    assert put.status_code == 201, put.text
    return chat, history


def send(stack: Stack, body: dict[str, Any], reply: str) -> None:
    stack.model.enqueue(message([text(reply)]))
    resp = httpx.post(f"{stack.url}/v1/chat", json=body, timeout=60)
    assert resp.status_code == 200, resp.text


def model_saw(stack: Stack) -> list[tuple[str, str]]:
    """Role and text of each turn of the model's latest request."""
    sent = stack.model.requests[-1][1]["messages"]
    return [
        (m["role"], "".join(b.get("text", "") for b in m["content"] if b["type"] == "text"))
        for m in sent
    ]


def turns_of(history: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (m["role"], "".join(p.get("text", "") for p in m["parts"] if p["type"] == "text"))
        for m in history
    ]


def stored_request(stack: Stack, chat: str) -> dict[str, Any]:
    """The stored request of the chat's latest generation."""
    client = redis_sync.Redis.from_url(stack.redis.url)
    try:
        generation = client.hget(keys.chat_key(chat), "generation")
        assert generation
        raw = client.hget(keys.meta_key(generation.decode()), "request")
        assert raw is not None
        found: dict[str, Any] = json.loads(raw)
        return found
    finally:
        client.close()


def test_a_long_chat_s_submit_sends_the_model_every_earlier_turn(stack: Stack) -> None:
    chat, history = seeded(stack, TURNS)
    send(stack, {"id": chat, "message": ui("user", "one more", "n1")}, "the answer")
    assert model_saw(stack) == [*turns_of(history), ("user", "one more")]
    job = stored_request(stack, chat)
    assert job["history"] == {"chat": chat} and "messages" not in job
    # The next submit finds the settled answer's turns beside it in the record.
    send(stack, {"id": chat, "message": ui("user", "and again", "n2")}, "second")
    want = [*turns_of(history), ("user", "one more"), ("assistant", "the answer")]
    assert model_saw(stack) == [*want, ("user", "and again")]


def test_an_edit_far_back_and_a_regenerate_on_the_record_s_turns(stack: Stack) -> None:
    chat, history = seeded(stack, TURNS)
    send(stack, {"id": chat, "message": ui("user", "newest", "n1")}, "A1")
    # An edit of a message long before the record's end: what followed it goes.
    send(stack, {"id": chat, "message": ui("user", "q3, edited", "u3")}, "A3 again")
    assert model_saw(stack) == [*turns_of(history[:6]), ("user", "q3, edited")]
    assert "messages" not in stored_request(stack, chat)
    got = httpx.get(f"{stack.url}/v1/chat/{chat}/messages").json()["messages"]
    assert [m["id"] for m in got][-2:] == ["u3", got[-1]["id"]] and len(got) == 8
    # A regenerate of the latest answer: answered again from the same turns.
    body = {"id": chat, "message": ui("user", "q3, edited", "u3")}
    send(stack, {**body, "trigger": "regenerate-message"}, "A3, third try")
    assert model_saw(stack) == [*turns_of(history[:6]), ("user", "q3, edited")]
    # A regenerate of an answer before the record's end is placed against the whole chat.
    body = {**body, "trigger": "regenerate-message", "messageId": "a1"}
    send(stack, {**body, "message": ui("user", "q1", "u1")}, "A1 again")
    assert model_saw(stack) == [*turns_of(history[:2]), ("user", "q1")]
    got = httpx.get(f"{stack.url}/v1/chat/{chat}/messages").json()["messages"]
    assert turns_of(got) == [*turns_of(history[:3]), ("assistant", "A1 again")]


def test_a_regenerate_far_back_sends_every_turn_before_it(stack: Stack) -> None:
    chat, history = seeded(stack, TURNS)
    # The record's end does not hold the answer: the chat is read whole, and the job
    # carries the whole request up to the regenerated answer.
    body = {"id": chat, "trigger": "regenerate-message", "messageId": "a1"}
    send(stack, {**body, "message": ui("user", "q1", "u1")}, "A1 again")
    assert model_saw(stack) == [*turns_of(history[:2]), ("user", "q1")]
    assert "history" not in stored_request(stack, chat)
    got = httpx.get(f"{stack.url}/v1/chat/{chat}/messages").json()["messages"]
    assert turns_of(got) == [*turns_of(history[:3]), ("assistant", "A1 again")]


def as_the_previous_version_stored_it(stack: Stack, chat: str, said: list[Any]) -> None:
    """The chat's queued job rewritten as the previous version made it: the whole model
    request in it (each text marked, to tell it from the record's), no ``history``."""
    job = stored_request(stack, chat)
    assert "history" in job and "messages" not in job
    old = {k: v for k, v in job.items() if k != "history"}
    old["messages"] = [
        {"role": r, "content": [{"type": "text", "text": f"{t} (the old job's)"}]} for r, t in said
    ]
    client = redis_sync.Redis.from_url(stack.redis.url)
    try:
        generation = client.hget(keys.chat_key(chat), "generation")
        assert generation is not None
        client.hset(keys.meta_key(generation.decode()), "request", json.dumps(old))
    finally:
        client.close()


def test_a_job_of_the_previous_shape_is_run_as_it_stands(stack: Stack) -> None:
    chat, history = seeded(stack, 2)
    stack.more_workers.pop().stop()  # the job waits while it is made the previous shape
    stack.model.enqueue(message([text("from the old job")]))
    said = [*turns_of(history), ("user", "q2")]
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        body = {"id": chat, "message": ui("user", "q2", "u2")}
        with client.stream("POST", "/v1/chat", json=body) as resp:
            assert resp.status_code == 200
            as_the_previous_version_stored_it(stack, chat, said)
            stack.add_worker()
            streamed = "".join(resp.iter_text())
    assert "from the old job" in streamed
    assert model_saw(stack) == [(r, f"{t} (the old job's)") for r, t in said]


def test_a_job_whose_turns_the_chat_no_longer_holds_ends_with_an_error(stack: Stack) -> None:
    chat, _ = seeded(stack, 2)
    stack.more_workers.pop().stop()  # the job waits while the record forgets its turns
    asked = len(stack.model.requests)
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        body = {"id": chat, "message": ui("user", "q2", "u2")}
        with client.stream("POST", "/v1/chat", json=body) as resp:
            assert resp.status_code == 200
            client_redis = redis_sync.Redis.from_url(stack.redis.url)
            try:  # what a seed since the submit leaves: the turns name no generation
                client_redis.hdel(keys.chat_key(chat), "model_for", "model_upto")
            finally:
                client_redis.close()
            stack.add_worker()
            streamed = "".join(resp.iter_text())
    assert '"type":"error"' in streamed and "no longer holds the history" in streamed
    assert len(stack.model.requests) == asked  # nothing was sent to the model


@pytest.fixture(scope="module")
def copying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"BROADCASTER_CHAT_JOB_HISTORY": "copy"}
    with anthropic_stack(tmp_path_factory.mktemp("copy"), {}, env) as s:
        yield s


def test_a_front_end_set_to_copy_stores_the_whole_request(copying: Stack) -> None:
    chat, history = seeded(copying, TURNS)
    send(copying, {"id": chat, "message": ui("user", "one more", "n1")}, "the answer")
    said = [*turns_of(history), ("user", "one more")]
    job = stored_request(copying, chat)
    assert "history" not in job
    # The job alone is what a worker of the previous version needs: every earlier turn.
    assert [(m["role"], m["content"][0]["text"]) for m in job["messages"]] == said
    assert model_saw(copying) == said
    send(copying, {"id": chat, "message": ui("user", "and again", "n2")}, "second")
    said += [("assistant", "the answer"), ("user", "and again")]
    assert model_saw(copying) == said
    job = stored_request(copying, chat)
    assert "history" not in job and len(job["messages"]) == len(said)
    # The record keeps the model turns beside its history all the same: once the setting
    # is removed, the next submit reads only the chat's end. The last answer is settled
    # into the record once it has ended, which may come just after its response.
    client = redis_sync.Redis.from_url(copying.redis.url)
    try:
        wait_for(
            "the last answer settled into the chat's record",
            lambda: client.llen(keys.chat_history_key(chat)) == len(history) + 4,
            within=10,
        )
        assert client.llen(keys.chat_model_key(chat)) == len(history) + 4
    finally:
        client.close()
