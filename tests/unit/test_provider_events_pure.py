"""The pure parts behind the providers' output: Chat Completions chunks as neutral
events (``openai_stream``, then the shared mapping), the content fold
(``generations.content``) that turns a generation's events back into the assistant turn,
and OpenAI's errors classified like Anthropic's."""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx2
import pytest

from broadcaster.generations.content import fold
from broadcaster.generations.request import validate_request
from tests.support.provider_requests import DEFAULTS, TOOL
from worker.mapping import EventMapper, merge_deltas
from worker.providers.anthropic_stream import AnthropicReader
from worker.providers.fake import fake_events
from worker.providers.openai_stream import ChunkTranslator, IncompleteStream
from worker.usage import Usage

# ---- chunks as events


def chunk(
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "c", "model": "m", "choices": choices, "usage": usage}


def events_of(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    translator = ChunkTranslator(new_call_id=lambda: "gen_id")
    mapper = EventMapper("g")
    raws = [raw for c in chunks for raw in translator.feed(c)] + translator.end()
    return [e for raw in raws for e in mapper.feed(raw)]


def test_reasoning_text_reasoning_again_and_calls_without_id() -> None:
    events = events_of(
        [
            chunk({"role": "assistant"}),
            chunk({"reasoning": "a"}),
            chunk({"content": "b"}),
            chunk({"reasoning_content": "c"}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]}),  # name later
            chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "1}"}}]}),
            chunk({}, finish="stop"),  # a server that says stop after calling a tool
            chunk(usage={"prompt_tokens": 3, "completion_tokens": 4}),
        ]
    )
    assert [e["type"] for e in events] == [
        "start", "start-step",
        "reasoning-start", "reasoning-delta", "reasoning-end",
        "text-start", "text-delta", "text-end",
        "reasoning-start", "reasoning-delta", "reasoning-end",
        "tool-input-start", "tool-input-delta", "tool-input-delta", "tool-input-available",
        "finish-step", "finish",
    ]  # fmt: skip
    assert events[11] == {"type": "tool-input-start", "toolCallId": "gen_id", "toolName": "f"}
    assert events[14]["input"] == {"x": 1}
    assert events[-1]["finishReason"] == "tool-calls"
    assert events[-1]["messageMetadata"]["usage"] == Usage(input=3, output=4).ai_sdk()


def test_both_reasoning_fields_at_once_are_one_delta() -> None:
    """vLLM, while it renamed ``reasoning_content`` to ``reasoning``, sent both."""
    events = events_of(
        [chunk({"reasoning_content": "hm", "reasoning": "hm"}), chunk({"content": "x"}, "stop")]
    )
    assert [e["delta"] for e in events if e["type"] == "reasoning-delta"] == ["hm"]


def test_parallel_calls_streamed_interleaved_are_two_tool_calls() -> None:
    def call(index: int, **function: str) -> dict[str, Any]:
        first = {"id": f"call_{index}", "type": "function"} if "name" in function else {}
        return chunk({"tool_calls": [{"index": index, **first, "function": function}]})

    events = events_of(
        [
            call(0, name="f", arguments='{"a":'),
            call(1, name="g", arguments='{"b":'),
            call(0, arguments=" 1}"),
            call(1, arguments=" 2}"),
            chunk({}, "tool_calls"),
        ]
    )
    available = [e for e in events if e["type"] == "tool-input-available"]
    assert [(e["toolCallId"], e["toolName"], e["input"]) for e in available] == [
        ("call_0", "f", {"a": 1}),
        ("call_1", "g", {"b": 2}),
    ]
    assert fold(events)[0] == {"type": "tool_use", "id": "call_0", "name": "f", "input": {"a": 1}}


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool-calls"),
        ("function_call", "tool-calls"),
        ("content_filter", "content-filter"),
        ("eos", "other"),
    ],
)
def test_finish_reasons(finish: str, reason: str) -> None:
    assert events_of([chunk({"content": "x"}, finish=finish)])[-1]["finishReason"] == reason


def test_a_refusal_is_text_and_content_filter() -> None:
    events = events_of([chunk({"refusal": "no"}, finish="stop")])
    assert [e.get("delta") for e in events if e["type"] == "text-delta"] == ["no"]
    assert events[-1]["finishReason"] == "content-filter"


def test_a_stream_without_finish_reason_or_tool_name_is_incomplete() -> None:
    translator = ChunkTranslator()
    translator.feed(chunk({"content": "x"}))
    with pytest.raises(IncompleteStream, match="finish_reason"):
        translator.end()
    translator = ChunkTranslator()
    translator.feed(
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}, finish="tool_calls")
    )
    with pytest.raises(IncompleteStream, match="without a name"):
        translator.end()


# ---- the content fold


def test_the_fold_rebuilds_the_turn_from_merged_events_and_only_the_last_attempt() -> None:
    request = {
        "prompt": "hi",
        "max_tokens": 3000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [TOOL],
    }
    mapper, reader = EventMapper("g"), AnthropicReader()
    read = [e for raw in fake_events(request) for e in reader.feed(raw)]
    events = merge_deltas([out for e in read for out in mapper.feed(e)])
    content = fold(events)
    assert [b["type"] for b in content] == ["thinking", "text", "tool_use"]
    assert content[0]["signature"].startswith("fake-sig-")
    assert content[1]["text"] == mapper.text
    assert content[2]["input"] == {"a": 1}
    redo = [*events[:4], {"type": "data-retry", "data": {"attempt": 2}}, *events]
    assert fold(redo) == content
    redacted = [
        {
            "type": "reasoning-start",
            "id": "r0",
            "providerMetadata": {"anthropic": {"redactedData": "D"}},
        },
        {"type": "reasoning-end", "id": "r0"},
        {"type": "tool-input-start", "toolCallId": "c", "toolName": "f"},
        {"type": "tool-input-delta", "toolCallId": "c", "inputTextDelta": '{"a": 2}'},
    ]
    assert fold(redacted) == [  # the provider's own tool call is left out
        {"type": "redacted_thinking", "data": "D"},
        {"type": "tool_use", "id": "c", "name": "f", "input": {"a": 2}},  # input so far
    ]


def test_an_empty_text_block_is_left_out_of_the_content() -> None:
    events = [
        {"type": "start", "messageId": "g"},
        {"type": "text-start", "id": "t0"},
        {"type": "text-end", "id": "t0"},
        {"type": "tool-input-start", "toolCallId": "c", "toolName": "f"},
        {"type": "tool-input-available", "toolCallId": "c", "toolName": "f", "input": {"a": 1}},
    ]
    assert fold(events) == [{"type": "tool_use", "id": "c", "name": "f", "input": {"a": 1}}]


def test_a_tool_call_of_broken_json_can_still_be_sent_back() -> None:
    """The event passes the model's text on; ``content`` has an empty object, which a
    next request takes back with the call's result."""
    call = {"index": 0, "id": "c9", "function": {"name": "f", "arguments": '{"a": 1,,'}}
    events = events_of([chunk({"tool_calls": [call]}), chunk({}, "tool_calls")])
    available = next(e for e in events if e["type"] == "tool-input-available")
    assert available["input"] == '{"a": 1,,'
    content = fold(events)
    assert content == [{"type": "tool_use", "id": "c9", "name": "f", "input": {}}]
    result = {"type": "tool_result", "tool_use_id": "c9", "content": "bad input", "is_error": True}
    turns = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": content},
        {"role": "user", "content": [result]},
    ]
    assert validate_request({"messages": turns, "tools": [TOOL]}, DEFAULTS)["messages"] == turns


# ---- OpenAI errors, classified like Anthropic's

REQ = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")


def openai_error(name: str, *args: Any, **kwargs: Any) -> BaseException:
    """``openai``'s exception class ``name``, made of ``args`` and ``kwargs``."""
    import openai

    made: BaseException = getattr(openai, name)(*args, **kwargs)
    return made


def status_error(name: str, status: int, **headers: str) -> BaseException:
    body = {"message": "nope", "type": "some_error"}
    response = httpx2.Response(status, headers=headers, request=REQ)
    return openai_error(name, "x", response=response, body=body)


@pytest.fixture
def exc(request: pytest.FixtureRequest) -> BaseException:
    """The case's exception, made when its test runs: collecting the cases imports no
    ``openai``. Each case is a ``partial``, which has no ``__name__``, so its id is
    ``exc<n>`` as an exception's would be."""
    made: BaseException = request.param()
    return made


@pytest.mark.parametrize(
    ("exc", "kind", "retryable", "retry_after", "says"),
    [
        (
            partial(status_error, "RateLimitError", 429, **{"retry-after": "2"}),
            "rate_limited",
            True,
            2.0,
            "rate limited (429): some_error: nope",
        ),
        (
            partial(status_error, "InternalServerError", 503, **{"retry-after-ms": "250"}),
            "server_error",
            True,
            0.25,
            "(503)",
        ),
        (
            partial(status_error, "BadRequestError", 400),
            "client_error",
            False,
            None,
            "error (400): some_error: nope",
        ),
        (partial(status_error, "ConflictError", 409), "client_error", True, None, "(409)"),
        (partial(openai_error, "APITimeoutError", request=REQ), "timeout", True, None, "timed out"),
        (
            partial(openai_error, "APIConnectionError", request=REQ),
            "connection",
            True,
            None,
            "cannot reach",
        ),
        (
            partial(
                openai_error,
                "APIError",
                "boom",
                REQ,
                body={"message": "boom", "type": "server_error"},
            ),
            "mid_stream",
            True,
            None,
            "mid-stream: server_error: boom",
        ),
        (partial(httpx2.ReadTimeout, "slow", request=REQ), "timeout", True, None, "timed out"),
        (
            partial(httpx2.RemoteProtocolError, "cut", request=REQ),
            "connection",
            True,
            None,
            "cannot reach",
        ),
    ],
    indirect=["exc"],
)
def test_openai_errors_are_classified(
    exc: BaseException, kind: str, retryable: bool, retry_after: float | None, says: str
) -> None:
    from worker.providers.openai import classify

    error = classify(exc)
    assert (error.kind, error.retryable, error.retry_after) == (kind, retryable, retry_after)
    assert says in error.message
