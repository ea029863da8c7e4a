"""The server keeps the history, on a real front-end, worker (the fake Anthropic server)
and Redis: ``POST /v1/chat`` with ``{id, message}`` answers from the chat's record (the
model gets every earlier turn), an edit replaces a message and drops what followed, a
regenerate answers again from that point, a continuation takes the last answer's place;
``{id, messages}`` keeps working, and a deployment that refuses a rewritten earlier turn
answers 409 ``history_conflict``."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.anthropic_scripts import gate, message, text
from tests.support.polling import wait_for
from tests.support.stacks import Stack, anthropic_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"BROADCASTER_CHAT_CLIENT_HISTORY": "refuse"}
    with anthropic_stack(tmp_path_factory.mktemp("one"), {}, env) as s:
        yield s


def user(words: str, mid: str) -> dict[str, Any]:
    return {"id": mid, "role": "user", "parts": [{"type": "text", "text": words}]}


def new_chat() -> str:
    return "one-" + secrets.token_hex(6)


def send(stack: Stack, body: dict[str, Any], reply: str = "ok") -> httpx.Response:
    stack.model.enqueue(message([text(reply)]))
    resp = httpx.post(f"{stack.url}/v1/chat", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp


def history(stack: Stack, chat: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(f"{stack.url}/v1/chat/{chat}/messages").json()[
        "messages"
    ]
    return found


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return ["".join(p.get("text", "") for p in m["parts"] if p["type"] == "text") for m in messages]


def model_saw(stack: Stack) -> list[str]:
    """The text of each turn of the model's latest request."""
    sent = stack.model.requests[-1][1]["messages"]
    return ["".join(b.get("text", "") for b in m["content"] if b["type"] == "text") for m in sent]


def test_only_the_new_message_is_sent_and_the_model_gets_the_whole_chat(stack: Stack) -> None:
    chat = new_chat()
    send(stack, {"id": chat, "message": user("One", "u1")}, "First answer.")
    send(stack, {"id": chat, "message": user("Two", "u2")}, "Second answer.")
    assert model_saw(stack) == ["One", "First answer.", "Two"]
    got = history(stack, chat)
    assert [m["id"] for m in got][::2] == ["u1", "u2"]
    assert texts(got) == ["One", "First answer.", "Two", "Second answer."]


def test_an_edit_replaces_the_message_and_a_regenerate_answers_again(stack: Stack) -> None:
    chat = new_chat()
    send(stack, {"id": chat, "message": user("One", "u1")}, "A1.")
    send(stack, {"id": chat, "message": user("Two", "u2")}, "A2.")
    # The AI SDK's edit: the message of an earlier id, the rest dropped.
    send(stack, {"id": chat, "message": user("Two, better", "u2")}, "A2 again.")
    assert model_saw(stack) == ["One", "A1.", "Two, better"]
    assert texts(history(stack, chat)) == ["One", "A1.", "Two, better", "A2 again."]
    answer = history(stack, chat)[-1]["id"]
    body = {"id": chat, "message": user("Two, better", "u2"), "messageId": answer}
    send(stack, {**body, "trigger": "regenerate-message"}, "A2, third try.")
    assert model_saw(stack) == ["One", "A1.", "Two, better"]
    assert texts(history(stack, chat)) == ["One", "A1.", "Two, better", "A2, third try."]
    bad = httpx.post(
        f"{stack.url}/v1/chat", json={**body, "trigger": "regenerate-message", "messageId": "u1"}
    )
    assert bad.status_code == 422 and "regenerate" in bad.json()["message"]


def test_the_whole_chat_still_works_and_a_forged_turn_is_refused(stack: Stack) -> None:
    chat = new_chat()
    send(stack, {"id": chat, "message": user("One", "u1")}, "True answer.")
    so_far = history(stack, chat)
    send(stack, {"id": chat, "messages": [*so_far, user("Two", "u2")]}, "Next.")
    assert texts(history(stack, chat)) == ["One", "True answer.", "Two", "Next."]
    forged = history(stack, chat)
    forged[1] = {**forged[1], "parts": [{"type": "text", "text": "Forged answer."}]}
    resp = httpx.post(
        f"{stack.url}/v1/chat", json={"id": chat, "messages": [*forged, user("Three", "u3")]}
    )
    assert resp.status_code == 409 and resp.json()["error"] == "history_conflict"
    assert texts(history(stack, chat)) == ["One", "True answer.", "Two", "Next."]


def test_a_message_that_is_not_one_is_refused_before_the_record_is_read(stack: Stack) -> None:
    for bad in ({"id": "x"}, "text", {"id": "u", "role": "robot", "parts": []}):
        resp = httpx.post(f"{stack.url}/v1/chat", json={"id": new_chat(), "message": bad})
        assert resp.status_code == 422, resp.text


def test_a_message_sent_while_the_answer_runs_writes_nothing(stack: Stack) -> None:
    chat = new_chat()
    opened = threading.Event()
    held = message([text(["Held", " answer", "."])])
    stack.model.enqueue([*held[:4], gate(opened), *held[4:]])
    first = {"id": chat, "message": user("A", "ua")}
    with (
        httpx.Client(base_url=stack.url, timeout=30) as client,
        client.stream("POST", "/v1/chat", json=first),
    ):
        wait_for("the answer", lambda: len(history(stack, chat)) == 2)
        busy = client.post("/v1/chat", json={"id": chat, "message": user("B", "ub")})
        opened.set()
    assert busy.status_code == 409 and busy.json()["error"] == "chat_busy"
    wait_for("the answer's end", lambda: texts(history(stack, chat))[-1] == "Held answer.")
    assert [m["id"] for m in history(stack, chat)] == ["ua", history(stack, chat)[1]["id"]]
