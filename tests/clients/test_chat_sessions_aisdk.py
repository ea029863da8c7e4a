"""A chat's stream and ``Idempotency-Key`` driven by the Vercel AI SDK's own client code:
``DefaultChatTransport.sendMessages`` (tests/clients/aisdk/chat.mjs) sends each turn,
twice for the first with the same ``Idempotency-Key`` (as an app's retry would), and a
follower (tests/clients/aisdk/follow_chat.mjs) reads ``GET /v1/chat/{id}/events`` through
``DefaultChatTransport.reconnectToStream`` and assembles each turn with
``readUIMessageStream``. One front-end and a worker with the fake provider.

Needs node >= 20 and the npm packages of tests/clients/aisdk; without them the test fails
and says so. It never skips.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import node_host
from tests.support.aisdk import AISDK_DIR, last_json, missing_prerequisites
from tests.support.stacks import Stack, start_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("the AI SDK test needs:\n  " + "\n  ".join(missing), pytrace=False)
    s = start_stack(tmp_path_factory.mktemp("aisdk-sessions"), "aisdk-sessions", {})
    yield s
    s.stop()


def node(script: str, *args: str, stdin: str = "") -> node_host.Started:
    return node_host.start(AISDK_DIR / script, list(args), stdin)


def output(proc: node_host.Started, stack: Stack) -> Any:
    return last_json(proc, stack)


def send(stack: Stack, chat: str, messages: list[dict[str, Any]], key: str) -> dict[str, Any]:
    request = {
        "api": stack.api,
        "chatId": chat,
        "messages": messages,
        "headers": {"Idempotency-Key": key},
        "body": {"max_tokens": 6},
    }
    found: dict[str, Any] = output(node("chat.mjs", "send", stdin=json.dumps(request)), stack)
    return found


def user(text: str, mid: str) -> dict[str, Any]:
    return {"id": mid, "role": "user", "parts": [{"type": "text", "text": text}]}


def test_a_follower_sees_each_turn_once_and_a_retried_submit_runs_once(stack: Stack) -> None:
    chat = "chat-" + secrets.token_hex(6)
    # From the chat's first turn (0:0: before it), whenever the follower connects.
    follower = node("follow_chat.mjs", f"{stack.api}/{chat}/events", "2", "--last-event-id", "0:0")
    key = secrets.token_hex(8)
    first = send(stack, chat, [user("first", "u1")], key)
    retried = send(stack, chat, [user("first", "u1")], key)
    second = send(stack, chat, [user("first", "u1"), first["message"], user("second", "u2")], "k2")
    turns = output(follower, stack)
    generation = first["responses"][0]["generation"]
    # The retry answered the first submit's stream: the same generation, the same message.
    assert retried["responses"][0]["generation"] == generation
    assert retried["message"] == first["message"]
    assert retried["responses"][0]["done"] is True
    # The follower saw two turns, each announced and assembled by the SDK: no third turn
    # from the retry.
    later = second["responses"][0]["generation"]
    assert [t["announced"]["generationId"] for t in turns] == [generation, later]
    assert [t["announced"]["userMessage"]["id"] for t in turns] == ["u1", "u2"]
    assert [t["message"] for t in turns] == [first["message"], second["message"]]
    assert turns[0]["chunk_types"][0] == "start" and turns[0]["chunk_types"][-1] == "finish"
