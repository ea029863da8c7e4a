"""A thread's history as AG-UI messages (broadcaster/agui/history.py): the UI messages a
chat keeps, and an answer folded from its AG-UI events, as ``@ag-ui/client`` applies them
(tests/clients/test_agui.py checks the same against the real client)."""

from __future__ import annotations

import pytest

from broadcaster.agui import frames
from broadcaster.agui.history import Transcript, from_ui, snapshot
from broadcaster.agui.runs import chat_body, parse_input

pytestmark = pytest.mark.unit

SENT = [
    {"id": "u1", "role": "user", "content": "Add 2 and 5."},
    {"id": "g1.3", "role": "assistant", "content": "Adding."},
    {
        "id": "g1.5",
        "role": "assistant",
        "toolCalls": [
            {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a":2}'}}
        ],
    },
    {"id": "g1.9", "role": "tool", "toolCallId": "c1", "content": '{"sum":7}'},
    {"id": "g1.12", "role": "assistant", "content": "It is 7."},
    {"id": "u2", "role": "user", "content": "Thanks."},
]


def test_a_thread_sent_as_agui_comes_back_as_sent_and_is_one_answer_for_the_chat() -> None:
    body = chat_body(parse_input({"threadId": "t", "runId": "r", "messages": SENT}), "default")
    ui = body["messages"]
    assert [m["role"] for m in ui] == ["user", "assistant", "user"]
    assert ui[1]["id"] == "g1"  # the generation: the chat's record names its answer so
    assert [p["type"] for p in ui[1]["parts"]] == ["text", "tool-add", "step-start", "text"]
    assert from_ui(ui) == SENT


def test_ui_messages_from_the_ai_sdk_split_at_each_step() -> None:
    ui = [
        {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]},
        {
            "id": "a1",
            "role": "assistant",
            "parts": [
                {"type": "step-start"},
                {"type": "reasoning", "text": "hm"},
                {"type": "text", "text": "Looking."},
                {
                    "type": "tool-weather",
                    "toolCallId": "c1",
                    "input": {"city": "Paris"},
                    "state": "output-available",
                    "output": {"t": 21},
                },
                {"type": "step-start"},
                {"type": "text", "text": "21 degrees."},
            ],
        },
    ]
    call = {"id": "c1", "type": "function",
            "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}  # fmt: skip
    assert from_ui(ui) == [
        {"id": "u1", "role": "user", "content": "Hi"},
        {"id": "a1", "role": "assistant", "content": "Looking.", "toolCalls": [call]},
        {"id": "a1.c1", "role": "tool", "toolCallId": "c1", "content": '{"t":21}'},
        {"id": "a1:1", "role": "assistant", "content": "21 degrees."},
    ]


def test_an_answer_folds_as_the_client_applies_it() -> None:
    t = Transcript([{"id": "u1", "role": "user", "content": "Hi"}])
    for event in [
        {"type": "TEXT_MESSAGE_START", "messageId": "g.3", "role": "assistant"},
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": "g.3", "delta": "Ad"},
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": "g.3", "delta": "ding."},
        {
            "type": "TOOL_CALL_START",
            "toolCallId": "c1",
            "toolCallName": "add",
            "parentMessageId": "g.5",
        },
        {"type": "TOOL_CALL_ARGS", "toolCallId": "c1", "delta": '{"a":'},
        {"type": "TOOL_CALL_ARGS", "toolCallId": "c1", "delta": "2}"},
        {"type": "TOOL_CALL_START", "toolCallId": "c2", "toolCallName": "add"},
        {"type": "TOOL_CALL_RESULT", "messageId": "g.9", "toolCallId": "c1", "content": "7"},
    ]:
        t.feed(event)
    assert [m["id"] for m in t.messages] == ["u1", "g.3", "g.5", "g.9", "c2"]
    assert t.messages[1]["content"] == "Adding."
    assert t.messages[2]["toolCalls"][0]["function"] == {"name": "add", "arguments": '{"a":2}'}
    assert t.messages[3] == {"id": "g.9", "role": "tool", "toolCallId": "c1", "content": "7"}


def test_a_snapshot_encoded_message_by_message_is_byte_for_byte_the_whole() -> None:
    for messages in ([], SENT, [{"id": "é", "role": "user", "content": 'a "quoted" \u2028 line'}]):
        event = snapshot(messages)
        assert frames.encode_at([event], b"7") == b"id: 7\ndata: %s\n\n" % frames.dumps(event)
    other = {"type": "RUN_STARTED", "messages": "not a list"}
    assert frames.encode_at([other], b"0") == b"id: 0\ndata: %s\n\n" % frames.dumps(other)
