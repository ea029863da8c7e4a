"""A generation's events folded into the assistant UI message (``chat/ui_message.py``), as
the AI SDK's client holds it. The same fold is checked against the AI SDK itself in
tests/clients/test_aisdk_chat.py."""

from __future__ import annotations

from typing import Any

from broadcaster.chat.ui_message import UIMessageFold, chat_messages, merge

SIGNED = {"anthropic": {"signature": "sig"}}
USER = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Weather?"}]}


def events_of_a_tool_turn() -> list[dict[str, Any]]:
    return [
        {"type": "start", "messageId": "g1"},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "r0"},
        {"type": "reasoning-delta", "id": "r0", "delta": "Let me "},
        {"type": "reasoning-delta", "id": "r0", "delta": "think.", "providerMetadata": SIGNED},
        {"type": "reasoning-end", "id": "r0"},
        {"type": "text-start", "id": "t0"},
        {"type": "text-delta", "id": "t0", "delta": "Checking"},
        {"type": "text-delta", "id": "t0", "delta": "."},
        {"type": "text-end", "id": "t0"},
        {"type": "tool-input-start", "toolCallId": "c1", "toolName": "get_weather"},
        {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": '{"city": "Pa'},
        {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": 'ris"}'},
        {
            "type": "tool-input-available",
            "toolCallId": "c1",
            "toolName": "get_weather",
            "input": {"city": "Paris"},
        },
        {"type": "finish-step"},
        {
            "type": "finish",
            "finishReason": "tool-calls",
            "messageMetadata": {"model": "m", "usage": {"inputTokens": 3, "outputTokens": 9}},
        },
    ]


TOOL_TURN = {
    "id": "g1",
    "role": "assistant",
    "metadata": {"model": "m", "usage": {"inputTokens": 3, "outputTokens": 9}},
    "parts": [
        {"type": "step-start"},
        {
            "type": "reasoning",
            "id": "r0",
            "text": "Let me think.",
            "state": "done",
            "providerMetadata": SIGNED,
        },
        {"type": "text", "text": "Checking.", "state": "done"},
        {
            "type": "tool-get_weather",
            "toolCallId": "c1",
            "state": "input-available",
            "input": {"city": "Paris"},
        },
    ],
}


def test_a_tool_turn_folds_to_the_sdk_message() -> None:
    assert chat_messages([USER], "g1", events_of_a_tool_turn()) == [USER, TOOL_TURN]


def test_parts_still_streaming_keep_their_state_and_partial_input() -> None:
    fold = UIMessageFold({"id": "g1", "role": "assistant", "parts": []})
    for event in events_of_a_tool_turn()[:12]:
        fold.feed(event)
    assert fold.message["parts"][-1] == {
        "type": "tool-get_weather",
        "toolCallId": "c1",
        "state": "input-streaming",
        "input": {"city": "Pa"},  # what the AI SDK's partial JSON makes of the cut text
        "rawInput": '{"city": "Pa',
    }
    fold.feed({"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": 'ris"}'})
    assert fold.message["parts"][-1]["input"] == {"city": "Paris"}


def test_a_continuation_extends_the_submitted_assistant_message() -> None:
    answered = {
        **TOOL_TURN,
        "parts": [
            *TOOL_TURN["parts"][:-1],
            {
                "type": "tool-get_weather",
                "toolCallId": "c1",
                "state": "output-available",
                "input": {"city": "Paris"},
                "output": "22 C",
            },
        ],
    }
    events = [
        {"type": "start", "messageId": "g1"},
        {"type": "start-step"},
        {"type": "text-start", "id": "t0"},
        {"type": "text-delta", "id": "t0", "delta": "Sunny."},
        {"type": "text-end", "id": "t0"},
        {"type": "finish-step"},
        {
            "type": "finish",
            "finishReason": "stop",
            "messageMetadata": {"usage": {"inputTokens": 5, "outputTokens": 2}},
        },
    ]
    got = chat_messages([USER, answered], "g1", events)
    assert len(got) == 2 and got[0] == USER
    assert got[1]["parts"] == [
        *answered["parts"],
        {"type": "step-start"},
        {"type": "text", "text": "Sunny.", "state": "done"},
    ]
    assert got[1]["metadata"] == {"model": "m", "usage": {"inputTokens": 5, "outputTokens": 2}}


def test_tool_outputs_run_by_the_worker() -> None:
    events = [
        *events_of_a_tool_turn()[:14],
        {"type": "tool-output-available", "toolCallId": "c1", "output": {"temp": 22}},
        {"type": "tool-input-start", "toolCallId": "c2", "toolName": "fail"},
        {"type": "tool-input-available", "toolCallId": "c2", "toolName": "fail", "input": {}},
        {"type": "tool-output-error", "toolCallId": "c2", "errorText": "nope"},
    ]
    parts = chat_messages([USER], "g1", events)[1]["parts"]
    assert parts[-2] == {
        "type": "tool-get_weather",
        "toolCallId": "c1",
        "state": "output-available",
        "input": {"city": "Paris"},
        "output": {"temp": 22},
    }
    assert parts[-1] == {
        "type": "tool-fail",
        "toolCallId": "c2",
        "state": "output-error",
        "input": {},
        "errorText": "nope",
    }


def test_a_retry_starts_the_message_again_and_data_parts_are_kept() -> None:
    events = [
        {"type": "start", "messageId": "g1"},
        {"type": "start-step"},
        {"type": "text-start", "id": "t0"},
        {"type": "text-delta", "id": "t0", "delta": "lost"},
        {"type": "data-retry", "data": {"attempt": 2, "reason": "worker lost"}},
        {"type": "start", "messageId": "g1"},
        {"type": "start-step"},
        {"type": "data-note", "id": "n", "data": 1},
        {"type": "data-note", "id": "n", "data": 2},
        {"type": "data-live", "data": 0, "transient": True},
        {"type": "text-start", "id": "t0"},
        {"type": "text-delta", "id": "t0", "delta": "kept"},
        {"type": "abort", "reason": "cancelled"},
    ]
    message = chat_messages([USER], "g1", events)[1]
    assert message == {
        "id": "g1",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {"type": "data-note", "id": "n", "data": 2},
            {"type": "text", "text": "kept", "state": "streaming"},
        ],
    }


def test_no_events_yet_no_assistant_message() -> None:
    assert chat_messages([USER], "g1", []) == [USER]


def test_metadata_merges_deeply() -> None:
    assert merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 3}, "e": [1]}) == {
        "a": {"b": 3, "c": 2},
        "d": 1,
        "e": [1],
    }


def test_sources_files_and_custom_parts_are_kept() -> None:
    """Each of these chunks becomes a part of the same fields."""
    kept = [
        {"type": "source-url", "sourceId": "s1", "url": "https://a.example/", "title": "A"},
        {
            "type": "source-document",
            "sourceId": "s2",
            "mediaType": "application/pdf",
            "title": "Doc",
            "providerMetadata": {"anthropic": {"citedText": "x"}},
        },
        {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AA=="},
        {"type": "reasoning-file", "mediaType": "image/png", "url": "https://a.example/r.png"},
        {"type": "custom", "kind": "openai.compaction"},
    ]
    events = [{"type": "start", "messageId": "g1"}, {"type": "start-step"}, *kept]
    parts = chat_messages([USER], "g1", events)[1]["parts"]
    assert parts == [{"type": "step-start"}, *kept]


def test_a_dynamic_tool_keeps_its_name_title_and_metadata() -> None:
    meta = {"mcp": {"server": "files"}}
    events = [
        {"type": "start", "messageId": "g1"},
        {
            "type": "tool-input-start",
            "toolCallId": "c1",
            "toolName": "read",
            "dynamic": True,
            "title": "Read a file",
        },
        {
            "type": "tool-input-available",
            "toolCallId": "c1",
            "toolName": "read",
            "dynamic": True,
            "input": {"path": "/a"},
            "providerMetadata": meta,
        },
        {"type": "tool-output-available", "toolCallId": "c1", "output": "text", "dynamic": True},
    ]
    assert chat_messages([USER], "g1", events)[1]["parts"] == [
        {
            "type": "dynamic-tool",
            "toolName": "read",
            "toolCallId": "c1",
            "state": "output-available",
            "title": "Read a file",
            "input": {"path": "/a"},
            "output": "text",
            "callProviderMetadata": meta,
        }
    ]


def test_a_step_start_nothing_followed_is_not_shown_yet() -> None:
    """The AI SDK's reader writes no snapshot for a ``start-step``: a tab shows it once the
    step's first part comes, and so does the history."""
    events = [{"type": "start", "messageId": "g1"}, {"type": "start-step"}]
    assert chat_messages([USER], "g1", events)[1]["parts"] == []
    events.append({"type": "text-start", "id": "t"})
    assert [p["type"] for p in chat_messages([USER], "g1", events)[1]["parts"]] == [
        "step-start",
        "text",
    ]
