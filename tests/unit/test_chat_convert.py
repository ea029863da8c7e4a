"""UI messages (the AI SDK's ``UIMessage``) converted to a generation request: each rule of
``broadcaster/chat/convert.py``, and the 422s."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from broadcaster.chat.convert import (
    generation_body,
    model_entry,
    parse_body,
    response_message_id,
    to_request,
)
from broadcaster.generations.chat_turns import assemble, with_system
from broadcaster.generations.request import Defaults, RequestInvalid

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
PDF = b"%PDF-1.4 tiny"


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def msg(role: str, *parts: dict[str, Any], mid: str = "m") -> dict[str, Any]:
    return {"id": mid, "role": role, "parts": list(parts)}


def body(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "chat1", "messages": list(messages), "trigger": "submit-message", **extra}


def convert(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return generation_body(parse_body(body(*messages, **extra)))


def tool(state: str, call: str = "call_1", **fields: Any) -> dict[str, Any]:
    return {"type": "tool-get_weather", "toolCallId": call, "state": state, **fields}


def test_user_text_and_system_messages() -> None:
    got = convert(
        msg("system", text("Be brief."), text(" Really."), mid="s"),
        msg("user", text("Hello"), text(""), {"type": "data-note", "data": 1}),
        system="House rules.",
        model="claude-x",
    )
    assert got == {
        "model": "claude-x",
        "system": [
            {"type": "text", "text": "House rules."},
            {"type": "text", "text": "Be brief. Really."},
        ],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
    }


def test_files_become_images_and_documents() -> None:
    png = "data:image/png;base64," + base64.b64encode(PNG).decode()
    pdf = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
    got = convert(
        msg(
            "user",
            {"type": "file", "mediaType": "image/png", "url": png},
            {"type": "file", "mediaType": "image/jpeg", "url": "https://x.test/a.jpg"},
            {"type": "file", "mediaType": "application/pdf", "url": pdf, "filename": "a.pdf"},
            {"type": "file", "mediaType": "text/plain", "url": "data:text/plain,h%C3%A9llo"},
        )
    )
    content = got["messages"][0]["content"]
    assert content == [
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/png",
                "data": base64.b64encode(PNG).decode(),
            },
        },
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
        {
            "type": "document",
            "source": {
                "type": "base64",
                "media_type": "application/pdf",
                "data": base64.b64encode(PDF).decode(),
            },
            "title": "a.pdf",
        },
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "héllo"},
        },
    ]
    to_request(parse_body(body(msg("user", content_part(png)))), Defaults())


def content_part(url: str) -> dict[str, Any]:
    return {"type": "file", "mediaType": "image/png", "url": url}


def test_an_assistant_message_is_split_at_each_step_with_its_tool_results() -> None:
    signed = {"anthropic": {"signature": "sig-1"}}
    assistant = msg(
        "assistant",
        {"type": "step-start"},
        {"type": "reasoning", "text": "hmm", "providerMetadata": signed},
        {"type": "reasoning", "text": "unsigned"},
        {"type": "reasoning", "text": "", "providerMetadata": {"anthropic": {"redactedData": "R"}}},
        text("Checking."),
        tool("output-available", input={"city": "Paris"}, output={"temp": 22}),
        {
            "type": "dynamic-tool",
            "toolName": "lookup",
            "toolCallId": "c2",
            "state": "output-error",
            "input": {"q": 1},
            "errorText": "boom",
        },
        {"type": "step-start"},
        tool("output-denied", call="c3", input={}, approval={"id": "a", "approved": False}),
        tool("input-streaming", call="c4"),
        {"type": "step-start"},
        text("Done."),
        {"type": "data-progress", "data": {}},
        mid="a1",
    )
    got = convert(msg("user", text("Weather?")), assistant, msg("user", text("Thanks"), mid="u2"))
    assert got["messages"] == [
        {"role": "user", "content": [text("Weather?")]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig-1"},
                {"type": "redacted_thinking", "data": "R"},
                text("Checking."),
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "c2", "name": "lookup", "input": {"q": 1}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": '{"temp":22}'},
                {"type": "tool_result", "tool_use_id": "c2", "content": "boom", "is_error": True},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "c3", "name": "get_weather", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "c3",
                    "content": "Tool call execution denied.",
                }
            ],
        },
        {"role": "assistant", "content": [text("Done.")]},
        {"role": "user", "content": [text("Thanks")]},
    ]
    # ... and the converted request passes Anthropic's rules across turns.
    to_request(
        parse_body(
            body(msg("user", text("Weather?")), assistant, msg("user", text("Thanks"), mid="u2"))
        ),
        Defaults(),
    )


def test_a_continuation_after_client_tool_results_ends_with_the_results() -> None:
    assistant = msg(
        "assistant",
        {"type": "step-start"},
        text("Let me look."),
        tool("output-available", input={"city": "Paris"}, output="22 C"),
        mid="a1",
    )
    chat = parse_body(body(msg("user", text("Weather?")), assistant))
    got = to_request(chat, Defaults())
    assert got["messages"][-1] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "22 C"}],
    }
    assert response_message_id(chat.messages, "new") == "a1"
    user_last = parse_body(body(msg("user", text("hi"))))
    assert response_message_id(user_last.messages, "new") == "new"


def test_provider_executed_tools_and_sources_are_left_out() -> None:
    got = convert(
        msg("user", text("q"), {"type": "source-url", "sourceId": "s", "url": "https://a"}),
        msg(
            "assistant",
            tool("output-available", providerExecuted=True, input={}, output=1),
            text("a"),
            mid="a",
        ),
    )
    assert got["messages"][1] == {"role": "assistant", "content": [text("a")]}


def test_an_answers_files_and_custom_parts_stay_in_the_history_not_the_request() -> None:
    made = {"type": "file", "mediaType": "image/png", "url": "https://a/p.png"}
    got = convert(
        msg("user", text("q")),
        msg(
            "assistant",
            made,
            {**made, "type": "reasoning-file"},
            {"type": "custom", "kind": "x"},
            text("a"),
            mid="a",
        ),
    )
    assert got["messages"][1] == {"role": "assistant", "content": [text("a")]}


BAD: list[tuple[str, Any, str]] = [
    ("not an object", [], "not an object"),
    ("unknown field", {**body(msg("user", text("x"))), "userId": 1}, "userId"),
    ("bad trigger", {**body(msg("user", text("x"))), "trigger": "resume-stream"}, "trigger"),
    ("bad chat id", {**body(msg("user", text("x"))), "id": "a b"}, "id"),
    ("empty messages", body(), "messages"),
    ("part without type", body(msg("user", {"text": "x"})), "type"),
    ("text not a string", body(msg("user", {"type": "text", "text": 3})), "text"),
    ("reasoning from the user", body(msg("user", {"type": "reasoning", "text": "x"})), "reasoning"),
    (
        "file in a system message",
        body(msg("system", content_part("data:,x")), msg("user", text("x"))),
        "only text",
    ),
    (
        "audio",
        body(msg("user", {"type": "file", "mediaType": "audio/wav", "url": "data:,x"})),
        "audio/wav",
    ),
    (
        "text file by url",
        body(msg("user", {"type": "file", "mediaType": "text/plain", "url": "https://a"})),
        "data: URL",
    ),
    ("bad base64", body(msg("user", content_part("data:image/png;base64,%%%"))), "base64"),
    (
        "tool part without id",
        body(
            msg("user", text("x")),
            msg("assistant", {"type": "tool-f", "state": "output-available"}),
        ),
        "toolCallId",
    ),
    ("only data parts", body(msg("user", {"type": "data-x", "data": 1})), "nothing to send"),
]


@pytest.mark.parametrize(("why", "raw", "named"), BAD, ids=[b[0] for b in BAD])
def test_what_cannot_be_converted_is_refused_naming_it(why: str, raw: Any, named: str) -> None:
    with pytest.raises(RequestInvalid) as caught:
        to_request(parse_body(raw), Defaults())
    assert named in caught.value.message + str(caught.value.details), why
    assert caught.value.details, why


def test_a_png_that_is_not_a_png_is_refused_by_the_request_checks() -> None:
    fake = "data:image/png;base64," + base64.b64encode(b"GIF89a....").decode()
    with pytest.raises(RequestInvalid) as caught:
        to_request(parse_body(body(msg("user", content_part(fake)))), Defaults())
    assert caught.value.message.startswith("the messages convert to an invalid model request")


def test_the_record_s_turns_joined_are_the_whole_chat_converted() -> None:
    """Each message converted on its own and kept as JSON (the record's model list),
    then joined as the worker joins them, is the request the whole chat converts to."""
    steered = {"type": "data-steer", "data": {"id": "u9", "text": "also Rome"}, "id": "u9"}
    chat = [
        msg("system", text("Be brief."), mid="s"),
        msg("user", text("Weather?"), mid="u1"),
        msg(
            "assistant",
            {"type": "step-start"},
            tool("output-available", input={"city": "Paris"}, output={"temp": 22}),
            steered,
            {"type": "step-start"},
            text("Sunny."),
            mid="a1",
        ),
        msg("user", text("also Rome"), mid="u9"),
        msg("user", text("Thanks"), mid="u2"),
    ]
    whole = convert(*chat, system="House rules.")
    checked = parse_body(body(*chat))
    stored = [json.loads(json.dumps(model_entry(m, x))) for m, x in enumerate(checked.messages)]
    messages, system = assemble(stored)
    assert messages == whole["messages"]
    assert with_system("House rules.", system) == whole["system"]
    assert [t["text"] for t in whole["system"]] == ["House rules.", "Be brief."]
