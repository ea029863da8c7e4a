"""The pure pieces of run ids, approvals and steering: a run id's parts and its chunk
window, the decisions a chat submit carries, a step's decisions and steering folded into
the next call, and the chat's fold of a tool call that waited for a person."""

from __future__ import annotations

from typing import Any

import pytest

from broadcaster.chat.convert import (
    approval_responses,
    chunk_window,
    generation_body,
    parse_body,
    parse_run_id,
    run_id,
)
from broadcaster.chat.ui_message import chat_messages
from worker.tools import Tool, ToolBox, _problem
from worker.transcript import Step, tool_result


def test_run_ids_round_trip_and_refuse_anything_else() -> None:
    made = run_id("chat_1", "Gen-2", 17)
    assert made == "chat_1~Gen-2~17"
    assert parse_run_id(made) == ("chat_1", "Gen-2", 17)
    for bad in ("chat", "a~b", "a~b~c", "a~b~-1", "a~b~1~2", "a b~c~1", "~b~1", "a~~1"):
        assert parse_run_id(bad) is None, bad


@pytest.mark.parametrize(
    ("base", "last", "start", "after"),
    [
        (0, 10, 0, 0),
        (0, 10, 4, 4),
        (5, 10, 2, 7),
        (0, 10, -3, 7),
        (5, 10, -3, 7),
        (5, 10, -100, 5),  # never before the run's first chunk
        (0, 0, -1, 0),
    ],
)
def test_the_chunk_window(base: int, last: int, start: int, after: int) -> None:
    assert chunk_window(base, last, start) == after


def _tool(state: str, **extra: Any) -> dict[str, Any]:
    return {"type": "tool-pay", "toolCallId": "c1", "state": state, "input": {"n": 1}, **extra}


def _chat(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"id": "c", "messages": list(messages)}


USER = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "pay"}]}


def test_a_submit_that_answers_an_approval_carries_the_decision() -> None:
    responded = _tool(
        "approval-responded", approval={"id": "a1", "approved": False, "reason": "no"}
    )
    answer = {"id": "m1", "role": "assistant", "parts": [{"type": "step-start"}, responded]}
    assert approval_responses(parse_body(_chat(USER, answer))) == [("a1", False, "no")]
    waiting = {
        "id": "m1",
        "role": "assistant",
        "parts": [_tool("approval-requested", approval={"id": "a1"})],
    }
    assert approval_responses(parse_body(_chat(USER, waiting))) == []
    assert approval_responses(parse_body(_chat(USER))) == []


def test_a_step_folds_decisions_denials_and_steering_into_the_next_call() -> None:
    step = Step(
        [
            {"type": "tool-input-available", "toolCallId": "c1", "toolName": "pay", "input": {}},
            {"type": "tool-approval-request", "approvalId": "a1", "toolCallId": "c1"},
            {
                "type": "data-approval",
                "data": {
                    "approvalId": "a1",
                    "toolCallId": "c1",
                    "approved": False,
                    "reason": "too much",
                },
                "transient": True,
            },
            {"type": "tool-output-denied", "toolCallId": "c1"},
            {"type": "finish-step"},
            {"type": "data-steer", "id": "u2", "data": {"id": "u2", "text": "and say hi"}},
        ]
    )
    assert step.requested() == {"c1": "a1"}
    assert step.decisions()["c1"]["approved"] is False
    _, user = step.turns()
    assert user["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "c1",
            "content": "The user denied this tool call. too much",
            "is_error": True,
        },
        {"type": "text", "text": "and say hi"},
    ]
    assert tool_result("c1", {"type": "tool-output-denied", "toolCallId": "c1"})["is_error"]


def test_a_steering_message_is_sent_once_from_the_answer_it_entered() -> None:
    answer = {
        "id": "m1",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            _tool("output-available", output={"ok": True}),
            {"type": "data-steer", "id": "u2", "data": {"id": "u2", "text": "and say hi"}},
            {"type": "step-start"},
            {"type": "text", "text": "Hi.", "state": "done"},
        ],
    }
    steer = {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "and say hi"}]}
    later = {"id": "u3", "role": "user", "parts": [{"type": "text", "text": "thanks"}]}
    body = generation_body(parse_body(_chat(USER, answer, steer, later)))
    texts = [b.get("text") for m in body["messages"] for b in m["content"] if b["type"] == "text"]
    assert texts.count("and say hi") == 1
    assert body["messages"][1]["content"][-1]["type"] == "tool_use"
    assert body["messages"][2]["content"][1] == {"type": "text", "text": "and say hi"}


def test_the_chat_fold_of_a_call_that_waited_for_a_person() -> None:
    events = [
        {"type": "start", "messageId": "m1"},
        {"type": "start-step"},
        {"type": "tool-input-start", "toolCallId": "c1", "toolName": "pay"},
        {"type": "tool-input-available", "toolCallId": "c1", "toolName": "pay", "input": {"n": 1}},
        {"type": "tool-approval-request", "approvalId": "a1", "toolCallId": "c1"},
    ]
    waiting = chat_messages([USER], "m1", events)[-1]["parts"][-1]
    assert waiting["state"] == "approval-requested" and waiting["approval"] == {"id": "a1"}
    decided = {
        "type": "data-approval",
        "data": {"approvalId": "a1", "toolCallId": "c1", "approved": True},
        "transient": True,
    }
    output = {"type": "tool-output-available", "toolCallId": "c1", "output": {"paid": 1}}
    done = chat_messages([USER], "m1", [*events, decided, output])[-1]["parts"][-1]
    assert done["state"] == "output-available" and done["output"] == {"paid": 1}
    assert done["approval"] == {"id": "a1", "approved": True}


async def _run(args: dict[str, Any]) -> dict[str, Any]:
    return args


def test_a_tool_needs_approval_always_by_its_input_or_when_its_predicate_fails() -> None:
    schema = {"type": "object"}

    def over_100(args: dict[str, Any]) -> bool:
        return bool(args["amount"] > 100)

    box = ToolBox.of(
        [
            Tool("always", "", schema, _run, needs_approval=True, approval_timeout_s=5),
            Tool("big", "", schema, _run, needs_approval=over_100),
            Tool("never", "", schema, _run),
        ],
        30,
        1000,
        approval_timeout_s=300,
    )
    assert box.needs_approval("always", {})
    assert box.needs_approval("big", {"amount": 500}) and not box.needs_approval(
        "big", {"amount": 5}
    )
    assert box.needs_approval("big", {})  # the predicate raised: ask, the safe side
    assert not box.needs_approval("never", {})
    assert (box.approval_timeout("always"), box.approval_timeout("big")) == (5, 300)
    bad = Tool("x", "", schema, _run, needs_approval="yes")  # type: ignore[arg-type]
    assert "needs_approval" in str(_problem(bad))
    assert "approval_timeout_s" in str(_problem(Tool("x", "", schema, _run, approval_timeout_s=0)))
