"""Approvals bound to their call (docs/resuming.md): a ``tool-approval-request`` says when
it expires; a decision that names another call or another input (``toolCallId``,
``inputHash``: sha256 of the input's RFC 8785 JSON) is 409 ``approval_mismatch``, on the
approvals route and in a chat submit; one after the deadline is 409 ``approval_expired``;
and the expiry is a ``data-approval-expired`` chunk on the generation's stream, then the
call's ``tool-output-denied``, which every viewer reads.

Real processes, one stack for the module: a Redis of its own, a front-end, a worker on the
real ``anthropic`` SDK against the local fake Anthropic API, with the tools of
tests/support/worker_tools.py (``transfer`` over 100 waits 1 s for a decision).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support.fake_anthropic import message, text, tool_use
from tests.support.polling import wait_for
from tests.support.procs import ROOT, parse_sse
from tests.support.stacks import Stack, anthropic_stack
from tests.support.worker_tools import runs


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("approval-binding")
    env = {
        "WORKER_TOOLS": "tests.support.worker_tools:TOOLS",
        "TOOL_RUNS_FILE": str(tmp / "runs.jsonl"),
        "PYTHONPATH": str(ROOT),
    }
    with anthropic_stack(tmp, env) as s:
        yield s


def events(raw: bytes) -> list[dict[str, Any]]:
    found, _, _ = parse_sse(raw)
    return [json.loads(e.data) for e in found if e.data and e.data != "[DONE]"]


def user(words: str) -> dict[str, Any]:
    return {"id": "u1", "role": "user", "parts": [{"type": "text", "text": words}]}


def ask(stack: Stack, chat: str, tool: str, call_id: str, args: str) -> dict[str, Any]:
    """A chat whose answer waits on a decision about ``tool``: its approval request."""
    calls = message([text(["Let me."]), tool_use(call_id, tool, [args])], stop_reason="tool_use")
    stack.model.route(f"{chat}-go", calls)
    stack.model.enqueue(message([text(["Done."])]))
    body = {"id": chat, "messages": [user(f"{chat}-go")], "trigger": "submit-message"}
    posted = httpx.post(f"{stack.url}/v1/chat", json=body, timeout=30)
    assert posted.status_code == 200, posted.text
    asked = events(posted.content)[-2]
    assert asked["type"] == "tool-approval-request", events(posted.content)
    return asked | {"generation": posted.headers["x-generation-id"]}


def digest(tool_input: Any) -> str:
    """The documented hash, written independently: for these inputs (ASCII names,
    integers) RFC 8785's form is Python's sorted compact JSON."""
    canonical = json.dumps(tool_input, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def status(stack: Stack, generation: str) -> str:
    found: str = httpx.get(f"{stack.url}/v1/generations/{generation}").json()["status"]
    return found


def stored(stack: Stack, generation: str) -> list[dict[str, Any]]:
    return events(httpx.get(f"{stack.url}/v1/streams/{generation}/events", timeout=30).content)


def decide(stack: Stack, chat: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/chat/{chat}/approvals", json=body, timeout=10)


def test_a_request_says_when_it_expires(stack: Stack) -> None:
    before = time.time()
    asked = ask(stack, "bind-expiry", "approved_add", "toolu_x1", '{"a": 1, "b": 2}')
    expires = datetime.fromisoformat(asked["expiresAt"].replace("Z", "+00:00")).timestamp()
    assert asked["expiresAt"].endswith("Z") and len(asked["expiresAt"]) == 24
    # The worker's default wait (WORKER_TOOL_APPROVAL_TIMEOUT_SECONDS, 300 s).
    assert before + 299 < expires < time.time() + 301


def test_a_decision_for_another_call_or_input_is_refused(stack: Stack) -> None:
    asked = ask(stack, "bind-match", "approved_add", "toolu_m1", '{"b": 5, "a": 2}')
    chat, approval = "bind-match", asked["approvalId"]
    other_call = decide(stack, chat, approvalId=approval, approved=True, toolCallId="toolu_zz")
    assert other_call.status_code == 409 and other_call.json()["error"] == "approval_mismatch"
    other_input = digest({"a": 2, "b": 6})
    wrong = decide(stack, chat, approvalId=approval, approved=True, inputHash=other_input)
    assert wrong.status_code == 409 and wrong.json()["error"] == "approval_mismatch"
    # A submit (addToolApprovalResponse) binds itself: its part's call and input.
    part = {
        "type": "tool-approved_add",
        "toolCallId": "toolu_m1",
        "state": "approval-responded",
        "input": {"a": 2, "b": 666},
        "approval": {"id": approval, "approved": True},
    }
    answer = {"id": "a1", "role": "assistant", "parts": [part]}
    body = {"id": chat, "messages": [user(f"{chat}-go"), answer], "trigger": "submit-message"}
    posted = httpx.post(f"{stack.url}/v1/chat", json=body, timeout=30)
    assert posted.status_code == 409 and posted.json()["error"] == "approval_mismatch"
    assert status(stack, asked["generation"]) == "waiting"  # nothing was decided
    right = decide(
        stack,
        chat,
        approvalId=approval,
        approved=True,
        toolCallId="toolu_m1",
        inputHash=digest({"a": 2, "b": 5}),
    )
    assert right.status_code == 200 and right.json()["decided"] is True, right.text
    generation = asked["generation"]
    wait_for("the end", lambda: status(stack, generation) == "completed", context=stack.logs)
    assert stack.root is not None
    assert runs(stack.root / "runs.jsonl", "approved_add") == 1


def test_the_expiry_is_an_event_and_a_later_decision_is_refused(stack: Stack) -> None:
    asked = ask(stack, "bind-late", "transfer", "toolu_l1", '{"amount": 500}')
    generation = asked["generation"]
    # A viewer that follows the generation from before the deadline.
    with httpx.stream("GET", f"{stack.url}/v1/streams/{generation}/events", timeout=30) as live:
        seen = b"".join(live.iter_bytes())
    wait_for("the end", lambda: status(stack, generation) == "completed", context=stack.logs)
    for got in (events(seen), stored(stack, generation)):
        kinds = [e["type"] for e in got]
        assert "data-approval-expired" in kinds, kinds
        expired = next(e for e in got if e["type"] == "data-approval-expired")
        assert expired["transient"] is True
        assert expired["data"]["approvalId"] == asked["approvalId"]
        assert expired["data"]["toolCallId"] == "toolu_l1"
        assert expired["data"]["expiresAt"] == asked["expiresAt"]
        # Then the call's own end, which a stock useChat shows as denied.
        assert kinds.index("tool-output-denied") > kinds.index("data-approval-expired")
    late = decide(stack, "bind-late", approvalId=asked["approvalId"], approved=True)
    assert late.status_code == 409 and late.json()["error"] == "approval_expired", late.text
    assert stack.root is not None
    assert runs(stack.root / "runs.jsonl", "transfer", "start") == 0
