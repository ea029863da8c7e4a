"""Tools that wait for a person (``Tool(needs_approval=...)``), over the HTTP API: the
generation suspends holding nothing, any client decides (the first decision wins), a
denial and a timeout reach the model, stop works while it waits, and the
``approval.requested`` webhook goes out.

Real processes: a Redis of the test's own, a front-end (delivering webhooks to a local
receiver), a worker with ``WORKER_CONCURRENCY=1`` on the real ``anthropic`` SDK against
the local fake Anthropic API, with the tools of tests/support/worker_tools.py. Every
tool run is recorded in a file, so the counts are exact.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync

from broadcaster.core import keys
from tests.support.fake_anthropic import message, text, tool_use
from tests.support.polling import wait_for
from tests.support.procs import ROOT, parse_sse
from tests.support.prompt_cache import without_breakpoints
from tests.support.stacks import Stack, anthropic_stack
from tests.support.webhooks import Receiver, webhook_env
from tests.support.worker_tools import runs


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("approvals")
    env = {
        "WORKER_TOOLS": "tests.support.worker_tools:TOOLS",
        "WORKER_CONCURRENCY": "1",
        "TOOL_RUNS_FILE": str(tmp / "runs.jsonl"),
        "PYTHONPATH": str(ROOT),
    }
    with anthropic_stack(tmp, env, webhook_env(receiver.url())) as s:
        yield s


def runs_file(stack: Stack) -> Path:
    """Where the test tools record their runs."""
    assert stack.root is not None
    return stack.root / "runs.jsonl"


def user(words: str) -> dict[str, Any]:
    return {"id": "u1", "role": "user", "parts": [{"type": "text", "text": words}]}


def calls(tool: str, call_id: str, args: str, words: str = "Let me.") -> list[Any]:
    return message([text([words]), tool_use(call_id, tool, [args])], stop_reason="tool_use")


def events(raw: bytes) -> list[dict[str, Any]]:
    found, _, _ = parse_sse(raw)
    return [json.loads(e.data) for e in found if e.data and e.data != "[DONE]"]


def status(stack: Stack, generation: str) -> str:
    found: str = httpx.get(f"{stack.url}/v1/generations/{generation}").json()["status"]
    return found


def stored(stack: Stack, generation: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"{stack.url}/v1/streams/{generation}/events", timeout=30)
    return events(resp.content)


def submit(stack: Stack, chat: str, words: str, **extra: Any) -> httpx.Response:
    body = {"id": chat, "messages": [user(words)], "trigger": "submit-message", **extra}
    return httpx.post(f"{stack.url}/v1/chat", json=body, timeout=30)


def tool_results(stack: Stack, marker: str) -> list[dict[str, Any]]:
    """The tool_result blocks of the last request to the model that mentions ``marker``
    (the prompt cache's breakpoints aside)."""
    mine = [r for r in stack.model.requests if marker in json.dumps(r.body["messages"][0])]
    results = mine[-1].body["messages"][-1]["content"]
    return [b for b in without_breakpoints(results) if b["type"] == "tool_result"]


def test_a_call_waits_holding_nothing_and_an_approval_resumes_it(
    stack: Stack, receiver: Receiver
) -> None:
    stack.model.route("approve-1", calls("approved_add", "toolu_a1", '{"a": 2, "b": 5}'))
    stack.model.enqueue(message([text(["It is ", "7."])]))
    posted = submit(stack, "chat-approve-1", "approve-1 please add")
    assert posted.status_code == 200
    generation = posted.headers["x-generation-id"]
    answer = events(posted.content)
    # The answer ends where the generation waits: the request, then a finish for the SDK.
    kinds = [e["type"] for e in answer]
    assert kinds[-3:] == ["tool-input-available", "tool-approval-request", "finish"], kinds
    assert answer[-1] == {"type": "finish", "finishReason": "tool-calls"}
    asked = answer[-2]
    assert asked["toolCallId"] == "toolu_a1" and asked["approvalId"].startswith("apr_")
    assert status(stack, generation) == "waiting"
    listed = httpx.get(f"{stack.url}/v1/chat/chat-approve-1/messages").json()
    assert listed["status"] == "waiting"
    part = listed["messages"][-1]["parts"][-1]
    assert part["state"] == "approval-requested" and part["approval"] == {"id": asked["approvalId"]}
    # With one worker slot, another chat's answer runs to its end while this one waits.
    stack.model.route("meanwhile", message([text(["Done ", "meanwhile."])]))
    other = submit(stack, "chat-meanwhile", "meanwhile, something else")
    assert [e["type"] for e in events(other.content)][-1] == "finish"
    assert status(stack, generation) == "waiting"
    assert runs(runs_file(stack), "approved_add", "start") == 0
    # The webhook: queued by the suspending append itself.
    wait_for(
        "approval.requested",
        lambda: bool(_hooks(receiver, "approval.requested")),
        context=stack.logs,
    )
    (hook,) = _hooks(receiver, "approval.requested")
    assert hook["data"]["id"] == generation
    assert hook["data"]["approvals"][0]["approvalId"] == asked["approvalId"]
    assert hook["data"]["approvals"][0]["toolName"] == "approved_add"
    decide = {"approvalId": asked["approvalId"], "approved": True}
    first = httpx.post(f"{stack.url}/v1/chat/chat-approve-1/approvals", json=decide)
    assert first.json() | {} == {
        "generation_id": generation,
        "approvalId": asked["approvalId"],
        "approved": True,
        "decided": True,
        "resumed": True,
    }
    late = httpx.post(
        f"{stack.url}/v1/generations/{generation}/approvals", json={**decide, "approved": False}
    )
    assert late.status_code == 200, late.text
    assert late.json()["decided"] is False and late.json()["approved"] is True  # first wins
    wait_for("the end", lambda: status(stack, generation) == "completed", context=stack.logs)
    everything = stored(stack, generation)
    kinds = [e["type"] for e in everything]
    k = kinds.index("tool-approval-request")
    assert kinds[k:] == [
        "tool-approval-request",
        "data-approval",
        "tool-output-available",
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ], kinds
    assert everything[k + 2]["output"] == {"sum": 7}
    assert kinds.count("start") == 1 and "data-retry" not in kinds
    assert runs(runs_file(stack), "approved_add") == 1
    assert tool_results(stack, "approve-1") == [
        {"type": "tool_result", "tool_use_id": "toolu_a1", "content": '{"sum": 7}'}
    ]
    meta = httpx.get(f"{stack.url}/v1/generations/{generation}").json()
    assert meta["status"] == "completed"
    final = httpx.get(f"{stack.url}/v1/chat/chat-approve-1/messages").json()["messages"][-1]
    tool = next(p for p in final["parts"] if p["type"] == "tool-approved_add")
    assert tool["state"] == "output-available" and tool["output"] == {"sum": 7}
    assert tool["approval"] == {"id": asked["approvalId"], "approved": True}


def _hooks(receiver: Receiver, kind: str) -> list[dict[str, Any]]:
    return [r.json() for r in receiver.at() if r.json()["type"] == kind]


def test_a_denial_reaches_the_model_and_the_tool_never_runs(stack: Stack) -> None:
    stack.model.route("deny-1", calls("approved_add", "toolu_d1", '{"a": 1, "b": 1}'))
    stack.model.enqueue(message([text(["Fine, ", "I won't."])]))
    posted = submit(stack, "chat-deny-1", "deny-1 add")
    generation = posted.headers["x-generation-id"]
    asked = events(posted.content)[-2]
    decide = {"approvalId": asked["approvalId"], "approved": False, "reason": "not today"}
    assert httpx.post(f"{stack.url}/v1/generations/{generation}/approvals", json=decide).json()[
        "decided"
    ]
    wait_for("the end", lambda: status(stack, generation) == "completed", context=stack.logs)
    kinds = [e["type"] for e in stored(stack, generation)]
    assert "tool-output-denied" in kinds and "tool-output-available" not in kinds
    assert runs(runs_file(stack), "approved_add", "start") == 1  # the first test's, only
    assert tool_results(stack, "deny-1") == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_d1",
            "content": "The user denied this tool call. not today",
            "is_error": True,
        }
    ]


def test_a_timeout_denies_and_the_model_is_told(stack: Stack) -> None:
    """``transfer`` over 100 needs approval and waits 1 s: the front-ends' sweep denies."""
    stack.model.route("timeout-1", calls("transfer", "toolu_t1", '{"amount": 500}'))
    stack.model.enqueue(message([text(["Nobody ", "answered."])]))
    posted = submit(stack, "chat-timeout-1", "timeout-1 send 500")
    generation = posted.headers["x-generation-id"]
    assert events(posted.content)[-2]["type"] == "tool-approval-request"
    wait_for("the end", lambda: status(stack, generation) == "completed", context=stack.logs)
    assert runs(runs_file(stack), "transfer", "start") == 0
    (result,) = tool_results(stack, "timeout-1")
    assert result["is_error"] is True and "No decision was made in time" in result["content"]
    decision = next(e for e in stored(stack, generation) if e["type"] == "data-approval")
    assert decision["data"]["approved"] is False


def test_a_predicate_that_says_no_runs_the_tool_at_once(stack: Stack) -> None:
    stack.model.route("small-1", calls("transfer", "toolu_s1", '{"amount": 5}'))
    stack.model.enqueue(message([text(["Sent."])]))
    posted = submit(stack, "chat-small-1", "small-1 send 5")
    kinds = [e["type"] for e in events(posted.content)]
    assert "tool-approval-request" not in kinds and kinds[-1] == "finish"
    assert runs(runs_file(stack), "transfer") == 1


def test_a_chat_waiting_for_an_approval_is_busy_saying_so(stack: Stack) -> None:
    """A second message while the answer waits for a person: 409 ``chat_busy`` that says
    it waits for an approval (not that it is generating). Its SSE answers carry each
    security header once."""
    stack.model.route("busy-1", calls("approved_add", "toolu_b1", '{"a": 1, "b": 1}'))
    posted = submit(stack, "chat-busy-1", "busy-1 add")
    assert posted.status_code == 200
    assert posted.headers.get_list("x-content-type-options") == ["nosniff"]
    assert posted.headers.get_list("cross-origin-resource-policy") == ["cross-origin"]
    assert status(stack, posted.headers["x-generation-id"]) == "waiting"
    second = submit(stack, "chat-busy-1", "busy-1 and another thing")
    assert second.status_code == 409 and second.json()["error"] == "chat_busy"
    message = second.json()["message"]
    assert "waits for a tool approval" in message and "is generating" not in message, message
    assert httpx.post(f"{stack.url}/v1/chat/chat-busy-1/stop").status_code == 202


def test_stop_while_waiting_ends_the_answer(stack: Stack) -> None:
    stack.model.route("stop-1", calls("approved_add", "toolu_x1", '{"a": 0, "b": 0}'))
    posted = submit(stack, "chat-stop-1", "stop-1 add")
    generation = posted.headers["x-generation-id"]
    asked = events(posted.content)[-2]
    # A viewer stays connected while it waits, and sees the end.
    got: list[bytes] = []
    viewer = threading.Thread(
        target=lambda: got.append(
            httpx.get(f"{stack.url}/v1/streams/{generation}/events", timeout=30).content
        )
    )
    viewer.start()
    wait_for(
        "the viewer",
        lambda: httpx.get(f"{stack.url}/readyz").json()["viewers"] == 1,
        context=stack.logs,
    )
    assert httpx.post(f"{stack.url}/v1/chat/chat-stop-1/stop").status_code == 202
    viewer.join(30)
    assert events(got[0])[-1] == {"type": "abort", "reason": "cancelled"}
    assert status(stack, generation) == "cancelled"
    late = httpx.post(
        f"{stack.url}/v1/chat/chat-stop-1/approvals",
        json={"approvalId": asked["approvalId"], "approved": True},
    )
    assert late.status_code == 409 and late.json()["error"] == "ended"
    waiting = stack_redis(stack).zrange(keys.waiting_key(generation), 0, -1)
    assert generation.encode() not in waiting
    assert runs(runs_file(stack), "approved_add", "start") == 1


def stack_redis(stack: Stack) -> Any:
    return redis_sync.Redis.from_url(stack.redis.url)


def test_unknown_approvals(stack: Stack) -> None:
    no = httpx.post(
        f"{stack.url}/v1/chat/chat-nobody/approvals", json={"approvalId": "x", "approved": True}
    )
    assert no.status_code == 404
    stack.model.route("unknown-1", message([text(["Hi."])]))
    posted = submit(stack, "chat-unknown-1", "unknown-1 hi")
    generation = posted.headers["x-generation-id"]
    bad = httpx.post(
        f"{stack.url}/v1/generations/{generation}/approvals",
        json={"approvalId": "x", "approved": True},
    )
    assert bad.status_code == 404
    shape = httpx.post(
        f"{stack.url}/v1/generations/{generation}/approvals", json={"approved": "yes"}
    )
    assert shape.status_code == 422


def test_the_logs_hold_no_traceback(stack: Stack) -> None:
    assert "Traceback" not in stack.frontend.log() + stack.worker.log(), stack.logs()
