"""The chat routes driven by the Vercel AI SDK's own client code (tests/clients/aisdk/chat.mjs):
``DefaultChatTransport`` pointed at ``{base}/v1/chat``, and the SDK's ``AbstractChat`` (the
class under ``useChat``) for a chat with a client-side tool.

The stack is real processes: a Redis server of the test's own, a front-end, and a worker
whose ``ANTHROPIC_BASE_URL`` is the local fake Anthropic server, scripted per test. Where a
test needs a generation that is still running, the script holds the stream at a gate the
test opens (or never opens), so nothing depends on timing: the test waits for the front-end
to report its viewers (``/readyz``) before it goes on.

Needs node >= 20 and the npm packages of tests/clients/aisdk; without them the test fails
and says so. It never skips.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.aisdk import missing_prerequisites, node, result, run, user
from tests.support.fake_anthropic import (
    Script,
    gate,
    message,
    text,
    thinking,
    tool_use,
)
from tests.support.polling import wait_for
from tests.support.procs import ROOT
from tests.support.prompt_cache import without_breakpoints
from tests.support.stacks import Stack, anthropic_stack
from tests.support.worker_tools import runs

CHUNKS = ["Stream", "ing ", "to every ", "tab."]
TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("the AI SDK chat test needs:\n  " + "\n  ".join(missing), pytrace=False)
    tmp = tmp_path_factory.mktemp("aisdk-chat")
    env = {
        "WORKER_TOOLS": "tests.support.worker_tools:TOOLS",
        "TOOL_RUNS_FILE": str(tmp / "tool-runs.jsonl"),
        "PYTHONPATH": str(ROOT),
    }
    with anthropic_stack(tmp, env) as s:
        yield s


def viewers(stack: Stack) -> int:
    count: int = httpx.get(f"{stack.frontend.url}/readyz").json()["viewers"]
    return count


def held(opened: threading.Event, after_deltas: int = 2) -> Script:
    """A reply with thinking and text, held at ``opened`` after a few text deltas."""
    script = message(
        [thinking(["Hm", "m."], signature="sig-chat"), text(CHUNKS)],
        input_tokens=7,
        output_tokens=11,
    )
    texts = [
        i
        for i, step in enumerate(script)
        if getattr(step, "event", "") == "content_block_delta"
        and step.data["delta"]["type"] == "text_delta"  # type: ignore[union-attr]
    ]
    script.insert(texts[after_deltas - 1] + 1, gate(opened))
    return script


def messages_of(stack: Stack, chat: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{stack.api}/{chat}/messages").json()
    return found


def answering(stack: Stack, chat: str) -> bool:
    """Whether the chat's answer has a text part yet (the gate comes after its start)."""
    messages = messages_of(stack, chat).get("messages", [])
    parts = messages[-1]["parts"] if messages and messages[-1]["role"] == "assistant" else []
    return any(part["type"] == "text" for part in parts)


def test_send_streams_a_whole_message_and_resume_after_the_end_is_null(stack: Stack) -> None:
    stack.model.enqueue(message([text(CHUNKS)], input_tokens=5, output_tokens=4))
    chat = "chat-send"
    sent = run("send", {"api": stack.api, "chatId": chat, "messages": [user("Hi")]}, stack)
    (post,) = sent["responses"]
    assert post["status"] == 200 and post["ui_message_stream_header"] == "v1"
    assert post["done"] is True
    assert sent["chunk_types"][0] == "start" and sent["chunk_types"][-1] == "finish"
    got = sent["message"]
    assert got["id"] == post["generation"] and got["role"] == "assistant"
    assert got["parts"] == [
        {"type": "step-start"},
        {"type": "text", "text": "".join(CHUNKS), "state": "done"},
    ]
    # The broadcaster's own fold of the chat is the message the SDK built.
    listed = messages_of(stack, chat)
    assert listed["status"] == "completed"
    assert listed["messages"] == [user("Hi"), got]
    resumed = run("resume", {"api": stack.api, "chatId": chat}, stack)
    assert resumed["status"] == 204 and resumed["message"] is None


def test_reconnect_during_the_generation_rebuilds_the_same_message(stack: Stack) -> None:
    opened = threading.Event()
    stack.model.enqueue(held(opened))
    chat = "chat-resume"
    request = {"api": stack.api, "chatId": chat, "messages": [user("Hi again")]}
    sender = node("send", {**request, "body": {"thinking": thinking_on(), "max_tokens": 4096}})
    try:
        wait_for("the first text", lambda: answering(stack, chat), context=stack.logs)
        resumer = node("resume", request)
        wait_for("the resuming tab", lambda: viewers(stack) == 2, context=stack.logs)
    finally:
        opened.set()
    sent, resumed = result(sender, stack), result(resumer, stack)
    assert resumed["status"] == 200
    assert resumed["responses"][0]["generation"] == sent["responses"][0]["generation"]
    assert resumed["chunk_types"] == sent["chunk_types"]
    assert resumed["message"] == sent["message"]
    parts = sent["message"]["parts"]
    assert [p["type"] for p in parts] == ["step-start", "reasoning", "text"]
    assert parts[1]["providerMetadata"] == {"anthropic": {"signature": "sig-chat"}}
    assert parts[2]["text"] == "".join(CHUNKS)
    assert messages_of(stack, chat)["messages"][-1] == sent["message"]
    assert run("resume", request, stack)["status"] == 204


def test_a_page_reloaded_mid_answer_shows_the_history_then_the_rest(stack: Stack) -> None:
    """``useChat({messages: <GET /messages>, resume: true})``: the assistant message the
    page starts with is the partial one, and the replay replaces it (same id): no
    duplicate, nothing lost."""
    opened = threading.Event()
    stack.model.enqueue(held(opened))
    chat = "chat-reload"
    request = {"api": stack.api, "chatId": chat, "messages": [user("Reload me")]}
    sender = node("send", request)
    try:
        wait_for("the first text", lambda: answering(stack, chat), context=stack.logs)
        so_far = messages_of(stack, chat)["messages"]
        assert so_far[-1]["parts"][-1]["state"] == "streaming"
        page = node("reload", {**request, "messages": so_far})
        wait_for("the reloaded page", lambda: viewers(stack) == 2, context=stack.logs)
    finally:
        opened.set()
    sent, reloaded = result(sender, stack), result(page, stack)
    assert reloaded["status"] == "ready"
    assert reloaded["messages"] == [user("Reload me"), sent["message"]]
    assert messages_of(stack, chat)["messages"] == reloaded["messages"]


def thinking_on() -> dict[str, Any]:
    return {"type": "enabled", "budget_tokens": 1024}


def test_a_client_tool_result_continues_the_same_assistant_message(stack: Stack) -> None:
    stack.model.enqueue(
        message(
            [
                thinking(["Need the weather."], signature="sig-tool"),
                text(["Let me check."]),
                tool_use("toolu_chat_1", "get_weather", ['{"city": ', '"Paris"}']),
            ],
            stop_reason="tool_use",
        )
    )
    stack.model.enqueue(message([text(["It is ", "sunny."])]))
    chat = "chat-tools"
    body = {"tools": TOOLS, "thinking": thinking_on(), "max_tokens": 4096}
    request = {
        "api": stack.api,
        "chatId": chat,
        "text": "Weather in Paris?",
        "toolOutput": {"temperature": 22, "sky": "clear"},
        "body": body,
    }
    done = run("chat", request, stack)
    assert done["status"] == "ready", done
    first, second = done["responses"]
    assert first["status"] == second["status"] == 200
    assert first["generation"] != second["generation"]
    assert done["finishes"] == [
        {"isAbort": False, "isError": False, "finishReason": "tool-calls"},
        {"isAbort": False, "isError": False, "finishReason": "stop"},
    ]
    asked, answer = done["messages"]
    assert asked["role"] == "user" and answer["role"] == "assistant"
    # One assistant message over both generations: the second continued the first's id.
    assert answer["id"] == first["generation"]
    assert [p["type"] for p in answer["parts"]] == [
        "step-start",
        "reasoning",
        "text",
        "tool-get_weather",
        "step-start",
        "text",
    ]
    call = answer["parts"][3]
    assert call["state"] == "output-available"
    assert call["input"] == {"city": "Paris"}
    assert call["output"] == {"temperature": 22, "sky": "clear"}
    assert answer["parts"][-1]["text"] == "It is sunny."
    # What the model was sent the second time: the signed thinking, the call, its result
    # (the prompt cache's breakpoints aside).
    sent = without_breakpoints(stack.model.requests[-1].body)
    assert sent["messages"][-2]["content"][0] == {
        "type": "thinking",
        "thinking": "Need the weather.",
        "signature": "sig-tool",
    }
    assert sent["messages"][-1]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_chat_1",
            "content": '{"temperature":22,"sky":"clear"}',
        }
    ]
    assert messages_of(stack, chat)["messages"] == done["messages"]


def test_a_tool_the_worker_runs_is_in_the_message_once(stack: Stack) -> None:
    stack.model.enqueue(
        message(
            [text(["Adding."]), tool_use("toolu_w1", "add", ['{"a": 2, ', '"b": 3}'])],
            stop_reason="tool_use",
        )
    )
    stack.model.enqueue(message([text(["It is ", "5."])]))
    chat = "chat-worker-tool"
    request = {"api": stack.api, "chatId": chat, "messages": [user("Add 2 and 3")]}
    sent = run("send", request, stack)
    assert sent["chunk_types"][-1] == "finish"
    parts = sent["message"]["parts"]
    assert [p["type"] for p in parts] == ["step-start", "text", "tool-add", "step-start", "text"]
    assert parts[2] == {
        "type": "tool-add",
        "toolCallId": "toolu_w1",
        "state": "output-available",
        "input": {"a": 2, "b": 3},
        "output": {"sum": 5},
    }
    assert parts[-1]["text"] == "It is 5."
    assert runs(stack.root / "tool-runs.jsonl", "add") == 1
    assert messages_of(stack, chat)["messages"] == [user("Add 2 and 3"), sent["message"]]


def test_stop_ends_the_message_with_abort_in_every_tab(stack: Stack) -> None:
    never = threading.Event()
    stack.model.enqueue(held(never))
    chat = "chat-stop"
    request = {"api": stack.api, "chatId": chat, "messages": [user("Go on")]}
    try:
        tabs = [node("send", request)]
        wait_for("the first text", lambda: answering(stack, chat), context=stack.logs)
        tabs += [node("resume", request), node("resume", request)]
        wait_for("three tabs", lambda: viewers(stack) == 3, context=stack.logs)
        stopped = httpx.post(f"{stack.api}/{chat}/stop")
        assert stopped.status_code == 202, stopped.text
        seen = [result(tab, stack) for tab in tabs]
    finally:
        never.set()
    for tab in seen:
        assert tab["chunk_types"][-1] == "abort", tab["chunk_types"]
        assert tab["responses"][0]["done"] is True
        assert tab["message"] == seen[0]["message"]
    assert seen[0]["message"]["parts"][-1]["text"] == "".join(CHUNKS[:2])
    assert messages_of(stack, chat)["status"] == "cancelled"
    assert run("resume", request, stack)["status"] == 204


def test_the_logs_hold_no_traceback(stack: Stack, tmp_path: Path) -> None:
    assert "Traceback" not in stack.frontend.log() + stack.worker.log(), stack.logs()
