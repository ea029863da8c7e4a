"""A second message while a chat's answer runs (``multitask``: ``reject``, ``enqueue``,
``interrupt``, ``steer``), sent by a second client ("tab") while the first one's answer is
held at a gate of the local fake Anthropic API.

Real processes: a Redis of the test's own, a front-end (whose chat pump starts queued
messages), a worker on the real ``anthropic`` SDK against the fake API, with the tools of
tests/support/worker_tools.py (``gate`` waits for a file the test creates).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.chat_tabs import Tab, body, events, user
from tests.support.fake_anthropic import gate, message, text, tool_use
from tests.support.polling import wait_for
from tests.support.procs import ROOT
from tests.support.prompt_cache import without_breakpoints
from tests.support.stacks import Stack, anthropic_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("multitask")
    worker_env = {
        "WORKER_TOOLS": "tests.support.worker_tools:TOOLS",
        "TOOL_RUNS_FILE": str(tmp / "runs.jsonl"),
        "TOOL_GATE_FILE": str(tmp / "gate"),
        "PYTHONPATH": str(ROOT),
    }
    with anthropic_stack(tmp, worker_env, {"BROADCASTER_CHAT_QUEUE_MAX": "2"}) as s:
        yield s


def held(words: list[str], opened: threading.Event) -> list[Any]:
    script = message([text(words)])
    deltas = [i for i, s in enumerate(script) if getattr(s, "event", "") == "content_block_delta"]
    script.insert(deltas[0] + 1, gate(opened))
    return script


def listed(stack: Stack, chat: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{stack.api}/{chat}/messages").json()
    return found


def running(stack: Stack, chat: str) -> bool:
    return listed(stack, chat).get("status") == "running"


def last_user_text(request_body: dict[str, Any]) -> str:
    content = request_body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content if b["type"] == "text")


def test_reject_is_the_default(stack: Stack) -> None:
    opened = threading.Event()
    stack.model.route("reject-a", held(["First ", "answer."], opened))
    chat = "chat-reject"
    first = Tab(stack, body(chat, user("reject-a", "u1")))
    try:
        wait_for("the first answer", lambda: running(stack, chat), context=stack.logs)
        second = httpx.post(stack.api, json=body(chat, user("reject-b", "u2")))
        assert second.status_code == 409 and second.json()["error"] == "chat_busy"
    finally:
        opened.set()
    assert events(first.result().content)[-1]["type"] == "finish"


def test_enqueue_runs_the_message_when_the_answer_ends(stack: Stack) -> None:
    opened = threading.Event()
    stack.model.route("enqueue-a", held(["The first ", "answer."], opened))
    stack.model.route("enqueue-b", message([text(["The queued ", "one."])]))
    chat = "chat-enqueue"
    first = Tab(stack, body(chat, user("enqueue-a", "u1")))
    try:
        wait_for("the first answer", lambda: running(stack, chat), context=stack.logs)
        queued = Tab(stack, body(chat, user("enqueue-b", "u2"), multitask="enqueue"))
        wait_for("it queued", lambda: bool(listed(stack, chat).get("queued")), context=stack.logs)
        (entry,) = listed(stack, chat)["queued"]
        assert entry["message"]["id"] == "u2"
        # Two may wait (BROADCASTER_CHAT_QUEUE_MAX=2), a third may not.
        extra = Tab(stack, body(chat, user("enqueue-c", "u3"), multitask="enqueue"))
        wait_for("two queued", lambda: len(listed(stack, chat)["queued"]) == 2, context=stack.logs)
        full = httpx.post(stack.api, json=body(chat, user("enqueue-d", "u4"), multitask="enqueue"))
        assert full.status_code == 409 and full.json()["error"] == "chat_queue_full"
    finally:
        opened.set()
    ended = first.result()
    assert events(ended.content)[-1]["type"] == "finish"
    answer = queued.result()
    assert answer.status_code == 200
    got = events(answer.content)
    assert got[0] == {"type": "data-queued", "data": {"position": 1}, "transient": True}
    assert got[1]["type"] == "start" and got[-1]["type"] == "finish"
    text_b = "".join(e["delta"] for e in got if e["type"] == "text-delta")
    assert text_b == "The queued one."
    # It started within a second of the first answer's end (the pump is woken by it).
    sent = [r for r in stack.model.exchanges if "enqueue-b" in json.dumps(r.body)]
    after = sent[0].started_at - first.ended_at
    print(f"enqueue: the queued message's model call {after:.3f} s after the first answer ended")
    assert after < 1.0  # the deadline the pump promises
    # Its model call had the whole first answer as history.
    history = sent[0].body["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert "The first answer." in json.dumps(history[1])
    assert events(extra.result().content)[-1]["type"] == "finish"  # then the third
    final = listed(stack, chat)
    assert final["queued"] == [] and final["status"] == "completed"
    assert [m["id"] for m in final["messages"] if m["role"] == "user"] == ["u1", "u2", "u3"]
    # The queued answer, started later by the pump, continued its request's trace: the
    # worker's log lines about it carry the trace id its response named.
    trace = answer.headers["x-trace-id"]
    about = [line for line in stack.worker.log().splitlines() if entry["generation_id"] in line]
    assert about and any(trace in line for line in about), (trace, about)


def test_interrupt_cancels_the_answer_and_starts_the_new_message(stack: Stack) -> None:
    never = threading.Event()
    stack.model.route("interrupt-a", held(["Never ", "finished."], never))
    stack.model.route("interrupt-b", message([text(["Instead."])]))
    chat = "chat-interrupt"
    first = Tab(stack, body(chat, user("interrupt-a", "u1")))
    try:
        wait_for("the first answer", lambda: running(stack, chat), context=stack.logs)
        second = httpx.post(
            stack.api, json=body(chat, user("interrupt-b", "u2"), multitask="interrupt"), timeout=30
        )
        cut = events(first.result().content)
    finally:
        never.set()
    assert cut[-1] == {"type": "abort", "reason": "interrupted"}
    got = events(second.content)
    assert got[-1]["type"] == "finish"
    assert "".join(e["delta"] for e in got if e["type"] == "text-delta") == "Instead."


def test_steer_reaches_the_next_model_call_of_a_tool_loop(stack: Stack) -> None:
    """The model calls ``gate`` (which waits for the test's file); meanwhile a second tab
    steers; the next step's model call carries the steering text after the tool result,
    and the stream records it (``data-steer``) before that step, in one answer."""
    calls = message(
        [text(["Waiting."]), tool_use("toolu_s", "gate", ["{}"])], stop_reason="tool_use"
    )
    stack.model.route("steer-a", calls)
    stack.model.route("steer-b", message([text(["Steered, ", "then done."])]))
    chat = "chat-steer"
    first = Tab(stack, body(chat, user("steer-a: wait for the gate", "u1")))
    wait_for("the tool", (stack.root / "runs.jsonl").exists, context=stack.logs)
    steered = httpx.post(
        stack.api, json=body(chat, user("steer-b: also say hello", "u2"), multitask="steer")
    )
    assert steered.status_code == 200
    ack = events(steered.content)
    assert ack[0]["type"] == "data-steered" and ack[0]["transient"] is True
    # Compact JSON, as every other event is written; the security headers once each.
    line = steered.content.split(b"\n")[0].decode()
    assert line == "data: " + json.dumps(ack[0], ensure_ascii=False, separators=(",", ":"))
    assert steered.headers.get_list("x-content-type-options") == ["nosniff"]
    assert steered.headers.get_list("cross-origin-resource-policy") == ["cross-origin"]
    assert ack[-1] == {"type": "finish"}
    (stack.root / "gate").touch()
    got = events(first.result().content)
    kinds = [e["type"] for e in got]
    k = kinds.index("tool-output-available")
    assert kinds[k : k + 4] == ["tool-output-available", "finish-step", "data-steer", "start-step"]
    assert got[k + 2]["data"] == {"id": "u2", "text": "steer-b: also say hello"}
    assert kinds.count("start") == 1 and kinds[-1] == "finish"
    step_2 = [r for r in stack.model.requests if "steer-b" in json.dumps(r.body["messages"][-1])]
    (sent,) = step_2
    last = without_breakpoints(sent.body["messages"][-1]["content"])
    assert last[0]["type"] == "tool_result" and last[0]["tool_use_id"] == "toolu_s"
    assert last[1] == {"type": "text", "text": "steer-b: also say hello"}
    answer = listed(stack, chat)["messages"][-1]
    assert [p["type"] for p in answer["parts"]] == [
        "step-start",
        "text",
        "tool-gate",
        "data-steer",
        "step-start",
        "text",
    ]


def test_steer_without_a_next_step_runs_as_if_enqueued(stack: Stack) -> None:
    opened = threading.Event()
    stack.model.route("late-a", held(["No tools ", "here."], opened))
    stack.model.route("late-b", message([text(["Now ", "steered."])]))
    chat = "chat-steer-late"
    first = Tab(stack, body(chat, user("late-a", "u1")))
    try:
        wait_for("the first answer", lambda: running(stack, chat), context=stack.logs)
        steered = httpx.post(stack.api, json=body(chat, user("late-b", "u2"), multitask="steer"))
        assert events(steered.content)[0]["type"] == "data-steered"
    finally:
        opened.set()
    assert events(first.result().content)[-1]["type"] == "finish"
    wait_for(
        "the steering message's own answer",
        lambda: (
            len(listed(stack, chat)["messages"]) == 4
            and listed(stack, chat)["status"] == "completed"
        ),
        context=stack.logs,
    )
    messages = listed(stack, chat)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[2]["id"] == "u2"
    assert "".join(p.get("text", "") for p in messages[3]["parts"]) == "Now steered."
    sent = [r for r in stack.model.requests if "late-b" in json.dumps(r.body["messages"][-1])]
    assert "No tools here." in json.dumps(sent[0].body["messages"][1])


def test_the_logs_hold_no_traceback(stack: Stack) -> None:
    assert "Traceback" not in stack.frontend.log() + stack.worker.log(), stack.logs()
