"""A chat kept past Redis, on a real front-end, worker (the fake Anthropic server) and
Redis: each turn settled into the chat's record once its answer ends (so the chat
outlives its answers' streams), the ``chat.turn.finished`` webhook for every turn however
it ended (a finish, an error, a stop), signed, received by a real receiver and verified
with the ``standardwebhooks`` library; retention as a setting; a chat seeded from an
app's store (``PUT /v1/chat/{id}/messages``, ``If-Match``) and deleted
(``DELETE /v1/chat/{id}``)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
from standardwebhooks import Webhook

from broadcaster.core import keys
from tests.support.anthropic_scripts import gate, message, sse_error, text
from tests.support.polling import wait_for
from tests.support.stacks import Stack, anthropic_stack
from tests.support.webhooks import SECRET, Receiver, webhook_env

TURN = "chat.turn.finished"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Receiver]]:
    """A stack whose webhooks go to a receiver of the test's, chats kept until deleted,
    and no retry of a failed model call (the error ends the answer, and its turn)."""
    with Receiver() as hooks:
        env = webhook_env(hooks.url(), BROADCASTER_CHAT_RETENTION_SECONDS="0")
        worker = {"WORKER_PROVIDER_RETRIES": "0"}
        with anthropic_stack(tmp_path_factory.mktemp("kept"), worker, env) as s:
            yield s, hooks


@pytest.fixture(scope="module")
def stack(deployment: tuple[Stack, Receiver]) -> Stack:
    return deployment[0]


@pytest.fixture(scope="module")
def receiver(deployment: tuple[Stack, Receiver]) -> Receiver:
    return deployment[1]


def user(words: str, mid: str) -> dict[str, Any]:
    return {"id": mid, "role": "user", "parts": [{"type": "text", "text": words}]}


def new_chat() -> str:
    return "kept-" + secrets.token_hex(6)


def send(stack: Stack, chat: str, *messages: dict[str, Any]) -> httpx.Response:
    """A whole submit, its answer read to the end."""
    body = {"id": chat, "messages": list(messages)}
    resp = httpx.post(f"{stack.url}/v1/chat", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp


def history(stack: Stack, chat: str) -> httpx.Response:
    return httpx.get(f"{stack.url}/v1/chat/{chat}/messages", timeout=10)


def store(stack: Stack) -> redis_sync.Redis:
    return redis_sync.Redis.from_url(stack.redis.url)


def settled(stack: Stack, chat: str) -> bool:
    with store(stack) as r:
        turn, done = r.hmget(keys.chat_key(chat), "turn", "settled")
    return turn is not None and turn == done


def turn_hooks(receiver: Receiver, chat: str) -> list[dict[str, Any]]:
    """The verified ``chat.turn.finished`` events of ``chat``, by turn (retries once)."""
    found: dict[int, dict[str, Any]] = {}
    for got in receiver.accepted():
        body: dict[str, Any] = Webhook(SECRET).verify(got.body, got.headers)
        if body["type"] == TURN and body["data"]["chat_id"] == chat:
            found[body["data"]["turn"]] = body["data"]
    return [found[k] for k in sorted(found)]


def test_a_finished_turn_is_settled_and_outlives_its_stream(
    stack: Stack, receiver: Receiver
) -> None:
    stack.model.enqueue(message([text(["Kept ", "here."])], input_tokens=5, output_tokens=3))
    chat = new_chat()
    generation = send(stack, chat, user("Keep this", "u1")).headers["x-generation-id"]
    wait_for("the turn settled", lambda: settled(stack, chat))
    before = history(stack, chat).json()
    assert [m["role"] for m in before["messages"]] == ["user", "assistant"]
    with store(stack) as r:
        assert r.llen(keys.chat_history_key(chat)) == 2  # the answer is in the record
        assert r.ttl(keys.chat_key(chat)) == -1  # retention 0: until deleted
        r.delete(*keys.stream_keys(generation))  # the answer's stream expires
    after = history(stack, chat).json()
    assert after["messages"] == before["messages"]
    assert after["status"] == "completed"  # as the turn ended, once its stream is gone
    wait_for("the webhook", lambda: turn_hooks(receiver, chat))
    (hook,) = turn_hooks(receiver, chat)
    assert hook["status"] == "completed" and hook["generation_id"] == generation
    assert hook["messages"] == before["messages"]
    assert hook["usage"] == {"input_tokens": 5, "output_tokens": 3}
    assert hook["owner"] is None  # an open deployment: chats have no owner


def test_failed_and_stopped_turns_send_the_webhook_too(stack: Stack, receiver: Receiver) -> None:
    reply = message([text(["Half", " of it", " and more"])])
    stack.model.enqueue([*reply[:5], sse_error("invalid_request_error", "boom")])
    chat = new_chat()
    send(stack, chat, user("Fail", "u1"))
    opened = threading.Event()
    held = message([text(["Stop", " me", " now"])])
    stack.model.enqueue([*held[:4], gate(opened), *held[4:]])
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        body = {
            "id": chat,
            "messages": [*history(stack, chat).json()["messages"], user("Again", "u2")],
        }
        with client.stream("POST", "/v1/chat", json=body) as resp:
            assert resp.status_code == 200
            wait_for("the second answer's text", lambda: _answered(history(stack, chat), "Stop"))
            assert client.post(f"/v1/chat/{chat}/stop").status_code == 202
            resp.read()
    opened.set()
    wait_for("both webhooks", lambda: len(turn_hooks(receiver, chat)) == 2)
    failed, stopped = turn_hooks(receiver, chat)
    assert failed["status"] == "failed" and "boom" in (failed["error"] or "")
    assert stopped["status"] == "cancelled"
    assert stopped["messages"][0]["id"] == "u2"
    assert [p["type"] for p in stopped["messages"][1]["parts"]][-1] == "text"


def _answered(resp: httpx.Response, words: str) -> bool:
    """Whether the chat's latest answer shows ``words`` yet."""
    last = resp.json()["messages"][-1]
    said = [p.get("text", "") for p in last["parts"] if p["type"] == "text"]
    return last["role"] == "assistant" and words in "".join(said)


def test_a_chat_is_seeded_from_an_apps_store_and_answered(stack: Stack) -> None:
    chat = new_chat()
    url = f"{stack.url}/v1/chat/{chat}/messages"
    seeded = [
        user("What is 2+2?", "u1"),
        {"id": "a1", "role": "assistant", "parts": [{"type": "text", "text": "4."}]},
    ]
    made = httpx.put(url, json={"messages": seeded})
    assert made.status_code == 201 and made.headers["etag"] == '"1"'
    got = history(stack, chat).json()
    assert got["messages"] == seeded and got["status"] == "idle" and got["generation_id"] is None
    again = httpx.put(url, json={"messages": seeded})
    assert again.status_code == 409 and again.json()["error"] == "chat_exists"
    stale = httpx.put(url, json={"messages": seeded}, headers={"if-match": '"7"'})
    assert stale.status_code == 412 and stale.json()["error"] == "version_mismatch"
    renamed = [seeded[0], {**seeded[1], "parts": [{"type": "text", "text": "Four."}]}]
    replaced = httpx.put(url, json={"messages": renamed}, headers={"if-match": '"1"'})
    assert replaced.status_code == 200 and replaced.json()["version"] == 2
    stack.model.enqueue(message([text("Eight.")]))
    send(stack, chat, *renamed, user("And 4+4?", "u2"))
    sent = stack.model.requests[-1][1]["messages"]
    # (Prompt caching marks the history's last block; the words are what is compared.)
    parts = [{k: v for k, v in p.items() if k != "cache_control"} for p in sent[1]["content"]]
    assert sent[1]["role"] == "assistant" and parts == [{"type": "text", "text": "Four."}]
    wait_for("the turn settled", lambda: settled(stack, chat))
    assert [m["id"] for m in history(stack, chat).json()["messages"]][:3] == ["u1", "a1", "u2"]


@pytest.mark.parametrize(
    ("why", "body"),
    [
        ("no messages", {"messages": []}),
        ("a field of none", {"messages": [user("x", "u1")], "extra": 1}),
        ("two share an id", {"messages": [user("x", "u1"), user("y", "u1")]}),
        (
            "a user's reasoning",
            {
                "messages": [
                    {"id": "u", "role": "user", "parts": [{"type": "reasoning", "text": "x"}]}
                ]
            },
        ),
        ("not a role", {"messages": [{"id": "u", "role": "tool", "parts": []}]}),
        ("an owner from an open deployment", {"messages": [user("x", "u1")], "owner": "bob"}),
    ],
)
def test_a_seed_is_checked_as_a_submit_is(stack: Stack, why: str, body: dict[str, Any]) -> None:
    chat = new_chat()
    resp = httpx.put(f"{stack.url}/v1/chat/{chat}/messages", json=body)
    assert resp.status_code in (403, 422), (why, resp.text)
    assert history(stack, chat).status_code == 404, why


def test_delete_stops_the_answer_and_removes_the_chat(stack: Stack) -> None:
    opened = threading.Event()
    held = message([text(["Never", " finished", "."])])
    stack.model.enqueue([*held[:4], gate(opened), *held[4:]])
    chat = new_chat()
    try:
        with httpx.Client(base_url=stack.url, timeout=30) as client:
            with client.stream(
                "POST", "/v1/chat", json={"id": chat, "messages": [user("Hi", "u1")]}
            ) as resp:
                generation = resp.headers["x-generation-id"]
                wait_for("the answer's text", lambda: _answered(history(stack, chat), "Never"))
                assert client.delete(f"/v1/chat/{chat}").status_code == 204
                tail = resp.read()
            assert b'"type":"abort"' in tail  # its viewers saw it stopped
            assert history(stack, chat).status_code == 404
            assert client.get(f"/v1/generations/{generation}").status_code == 404
            assert client.delete(f"/v1/chat/{chat}").status_code == 404
    finally:
        opened.set()
    with store(stack) as r:
        chat_keys = [keys.chat_key(chat), keys.chat_history_key(chat), keys.chat_turns_key(chat)]
        assert not r.exists(*chat_keys)


def test_the_logs_hold_no_traceback(stack: Stack, tmp_path: Path) -> None:
    assert "Traceback" not in stack.logs(200_000)
