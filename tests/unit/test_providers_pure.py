"""The pure parts behind the providers: request validation (``generations.request``), the
request's translation to Chat Completions (``openai_request``), Chat Completions chunks
as Anthropic raw events (``openai_stream``, then the shared mapping), and the content fold
(``generations.content``) that turns a generation's events back into the assistant turn."""

from __future__ import annotations

import base64
import itertools
from typing import Any

import httpx2
import openai
import pytest

from broadcaster.generations.content import fold
from broadcaster.generations.request import Defaults, RequestInvalid, validate_request
from worker.mapping import EventMapper, merge_deltas
from worker.providers.fake import FakeProvider, fake_events
from worker.providers.openai import classify
from worker.providers.openai_request import Untranslatable, chat_params, reasoning_effort
from worker.providers.openai_stream import ChunkTranslator, IncompleteStream
from worker.settings import WorkerSettings

DEFAULTS = Defaults()
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 8).decode()
TOOL = {"name": "f", "input_schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}


def invalid(body: dict[str, Any]) -> RequestInvalid:
    with pytest.raises(RequestInvalid) as info:
        validate_request(body, DEFAULTS)
    return info.value


# ---- validation


def test_a_valid_request_is_stored_as_sent_with_defaults() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    }
                ],
            },
        ],
        "tools": [TOOL, {"type": "web_search_20250305", "name": "web_search", "max_uses": 1}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "max_tokens": 2000,
        "system": None,
        "id": "mine",
        "metadata": {"user_id": "u1", "anything": [1, None]},
    }
    stored = validate_request(body, DEFAULTS)
    assert stored == {
        **{k: v for k, v in body.items() if k not in ("id", "system")},
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
    }
    openai = validate_request({"prompt": "x", "provider": "openai"}, DEFAULTS)
    assert (openai["model"], openai["max_tokens"]) == ("gpt-4.1-mini", 1024)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"prompt": "x", "tools": [{"name": "f"}]}, ["tools", 0, "input_schema"]),
        ({"prompt": "x", "tools": [TOOL, TOOL]}, ["tools", 1, "name"]),
        (
            {"prompt": "x", "tool_choice": {"type": "tool", "name": "g"}, "tools": [TOOL]},
            ["tool_choice", "name"],
        ),
        (
            {"prompt": "x", "thinking": {"type": "enabled", "budget_tokens": 1023}},
            ["thinking", "budget_tokens"],
        ),
        (
            {"prompt": "x", "thinking": {"type": "enabled", "budget_tokens": 1024}},
            ["thinking", "budget_tokens"],
        ),
        ({"prompt": "x", "temperature": 1.01}, ["temperature"]),
        (
            {
                "prompt": "x",
                "max_tokens": 2048,
                "temperature": 0.5,
                "thinking": {"type": "enabled", "budget_tokens": 1024},
            },
            ["temperature"],
        ),
        ({"prompt": "x", "top_k": 5, "thinking": {"type": "adaptive"}}, ["top_k"]),
        ({"prompt": "x", "top_p": 0.9, "thinking": {"type": "adaptive"}}, ["top_p"]),
        ({"prompt": "x", "temperature": "1"}, ["temperature"]),
        ({"prompt": "x", "top_p": 1.5}, ["top_p"]),
        ({"prompt": "x", "service_tier": "flex"}, ["service_tier"]),
        ({"prompt": "x", "metadata": {"user_id": "u" * 257}}, ["metadata", "user_id"]),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            ["messages", 0, "content", 0, "text"],
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/jpeg",
                                    "data": PNG,
                                },
                            }
                        ],
                    }
                ]
            },
            ["messages", 0, "content", 0, "source"],
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "document",
                                "source": {
                                    "type": "base64",
                                    "media_type": "application/pdf",
                                    "data": "%%%",
                                },
                            }
                        ],
                    }
                ]
            },
            ["messages", 0, "content", 0, "source", "data"],
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
                    },
                    {"role": "user", "content": "no result"},
                ]
            },
            ["messages", 1, "content"],
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "thinking", "thinking": "x", "signature": "s"}],
                    }
                ]
            },
            ["messages", 0, "content", 0],
        ),
    ],
)
def test_each_mistake_names_its_field(body: dict[str, Any], where: list[Any]) -> None:
    error = invalid(body)
    assert where in [d["loc"] for d in error.details], error.details
    assert error.message.startswith("invalid generation request: ")


def test_what_anthropic_refuses_while_thinking_is_fine_for_openai() -> None:
    body = {
        "prompt": "x",
        "provider": "openai",
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "temperature": 0.2,
        "top_k": 5,
        "tools": [TOOL],
        "tool_choice": {"type": "any"},
    }
    assert validate_request(body, DEFAULTS)["tool_choice"] == {"type": "any"}


def test_unknown_top_level_fields_are_named() -> None:
    error = invalid({"prompt": "x", "stream": True, "n": 2})
    assert error.message == "unknown fields: stream, n"


def test_a_tool_result_must_answer_the_turn_just_before() -> None:
    use = {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "t1", "content": "ok"}
    ok = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [result, {"type": "text", "text": "go"}]},
    ]
    assert validate_request({"messages": ok}, DEFAULTS)["messages"] == ok
    late = [*ok[:2], {"role": "user", "content": [{"type": "text", "text": "go"}, result]}]
    assert "must come first" in invalid({"messages": late}).message
    stale = [*ok, {"role": "assistant", "content": "fine"}, {"role": "user", "content": [result]}]
    assert invalid({"messages": stale}).details[0]["loc"] == [
        "messages",
        4,
        "content",
        0,
        "tool_use_id",
    ]


SPLIT_TURNS = [
    {"role": "user", "content": "q"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
    {"role": "assistant", "content": "and another:"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "t2", "name": "f", "input": {}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "1"}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2", "content": "2"}]},
]
"""One assistant turn and one user turn, each in several messages, as Anthropic merges
them."""


def test_consecutive_messages_of_one_role_are_one_turn() -> None:
    assert validate_request({"messages": SPLIT_TURNS}, DEFAULTS)["messages"] == SPLIT_TURNS
    unanswered = SPLIT_TURNS[:-1]
    assert invalid({"messages": unanswered}).details == [
        {"loc": ["messages", 4, "content"], "msg": "tool_use 't2' has no tool_result here"}
    ]
    call = {"type": "function", "function": {"name": "f", "arguments": "{}"}}
    assert chat_params({"model": "m", "max_tokens": 5, "messages": SPLIT_TURNS})["messages"] == [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": "and another:",
            "tool_calls": [{"id": "t1", **call}, {"id": "t2", **call}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "1"},
        {"role": "tool", "tool_call_id": "t2", "content": "2"},
    ]


# ---- the request as Chat Completions


def test_translation_of_turns_tools_and_options() -> None:
    request = {
        "model": "m",
        "max_tokens": 50,
        "system": "sys",
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": "s"},
                    {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
                    {"type": "tool_use", "id": "c2", "name": "f", "input": {"a": 2}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "c1", "content": "one"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "c2",
                        "content": [{"type": "text", "text": "two"}],
                    },
                    {"type": "text", "text": "and?"},
                ],
            },
        ],
        "tools": [TOOL],
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "disabled"},
    }
    params = chat_params(request, "max_tokens")
    assert params["max_tokens"] == 50 and "max_completion_tokens" not in params
    assert params["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a": 1}'},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a": 2}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
        {"role": "user", "content": "and?"},
    ]
    assert params["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": TOOL["input_schema"]}}
    ]
    assert params["tool_choice"] == "auto"
    assert "reasoning_effort" not in params


@pytest.mark.parametrize(
    ("budget", "effort"),
    [(1024, "low"), (4095, "low"), (4096, "medium"), (16383, "medium"), (16384, "high")],
)
def test_thinking_budget_to_reasoning_effort(budget: int, effort: str) -> None:
    assert reasoning_effort(budget) == effort


@pytest.mark.parametrize(
    "block",
    [
        {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}},
        {"type": "search_result", "source": "x"},
    ],
)
def test_what_has_no_equivalent_is_refused_before_the_call(block: dict[str, Any]) -> None:
    request = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [block]}]}
    with pytest.raises(Untranslatable):
        chat_params(request)
    with pytest.raises(Untranslatable, match="server tool"):
        chat_params(
            {
                "model": "m",
                "max_tokens": 5,
                "prompt": "x",
                "tools": [{"type": "web_search_20250305", "name": "w"}],
            }
        )


def _user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": list(blocks)}]}


IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
USE = {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
NO_EQUIVALENT = [
    (
        {"prompt": "x", "tools": [{"type": "web_search_20250305", "name": "w"}]},
        ["tools", 0, "type"],
    ),
    (
        _user({"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}),
        ["messages", 0, "content", 0, "source", "type"],
    ),
    (
        _user({"type": "document", "source": {"type": "content", "content": [IMAGE]}}),
        ["messages", 0, "content", 0, "source", "content", 0],
    ),
    (_user({"type": "search_result", "source": "x"}), ["messages", 0, "content", 0]),
    (
        {
            "messages": [
                {"role": "assistant", "content": [{"type": "server_tool_use", "id": "s"}, USE]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [IMAGE]}],
                },
            ]
        },
        ["messages", 0, "content", 0],
    ),
]


@pytest.mark.parametrize(("body", "where"), NO_EQUIVALENT)
def test_what_openai_cannot_take_is_refused_at_creation(
    body: dict[str, Any], where: list[Any]
) -> None:
    """Each request Anthropic takes and Chat Completions cannot: a 422 for ``openai`` at
    the field, and the worker's translation would refuse it too (the check and the
    translation agree)."""
    stored = validate_request(body, DEFAULTS)
    error = invalid({**body, "provider": "openai"})
    assert where in [d["loc"] for d in error.details], error.details
    assert "no OpenAI equivalent" in error.message
    with pytest.raises(Untranslatable):
        chat_params({**stored, "provider": "openai"})


def test_a_tool_result_of_images_is_named_for_openai() -> None:
    body = {
        "provider": "openai",
        "messages": [
            {"role": "assistant", "content": [USE]},
            _user({"type": "tool_result", "tool_use_id": "t1", "content": [IMAGE]})["messages"][0],
        ],
    }
    assert ["messages", 1, "content", 0, "content", 0] in [d["loc"] for d in invalid(body).details]


def test_a_tool_type_that_is_not_anthropics_is_refused() -> None:
    error = invalid({"prompt": "x", "tools": [{"type": "function", "function": {"name": "f"}}]})
    assert ["tools", 0, "type"] in [d["loc"] for d in error.details]
    assert "web_search_20250305" in error.message


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
    assert events[-1]["messageMetadata"]["usage"] == {"inputTokens": 3, "outputTokens": 4}


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
    mapper = EventMapper("g")
    events = merge_deltas([e for raw in fake_events(request) for e in mapper.feed(raw)])
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


@pytest.mark.anyio
async def test_the_fake_answers_tool_results_in_text() -> None:
    use = {"type": "tool_use", "id": "t", "name": "f", "input": {}}
    request = {
        "max_tokens": 10,
        "tools": [TOOL],
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [use]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
        ],
    }
    provider = FakeProvider(0)
    async with provider.stream(request) as events:
        raws = [raw async for raw in events]
    assert [r["content_block"]["type"] for r in raws if r["type"] == "content_block_start"] == [
        "text"
    ]
    assert (
        next(itertools.dropwhile(lambda r: r["type"] != "message_delta", raws))["delta"][
            "stop_reason"
        ]
        == "end_turn"
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_the_limit_is_on_what_clients_ask_not_on_the_default() -> None:
    small = Defaults(max_tokens=1024, max_tokens_limit=100)
    assert validate_request({"prompt": "x"}, small)["max_tokens"] == 1024
    with pytest.raises(RequestInvalid, match="limited to 100"):
        validate_request({"prompt": "x", "max_tokens": 101}, small)


def test_the_fake_echoes_text_and_tool_results_not_their_json() -> None:
    result = {
        "type": "tool_result",
        "tool_use_id": "t",
        "content": [{"type": "text", "text": "22 C"}],
    }
    request = {
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [result, {"type": "text", "text": "so?"}]}],
    }
    texts = [e["delta"]["text"] for e in fake_events(request) if e["type"] == "content_block_delta"]
    assert texts[:2] == ["You said: ", "22 C so?"]


@pytest.mark.parametrize(
    ("env", "served"),
    [
        ({}, ("anthropic",)),
        ({"WORKER_PROVIDER": "openai"}, ("openai",)),
        (
            {"WORKER_PROVIDER": "fake", "WORKER_PROVIDERS": " openai, anthropic ,openai"},
            ("openai", "anthropic"),
        ),
        ({"WORKER_PROVIDERS": "fake"}, ("fake",)),
    ],
)
def test_the_providers_a_worker_serves(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], served: tuple[str, ...]
) -> None:
    for name in ("WORKER_PROVIDER", "WORKER_PROVIDERS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert WorkerSettings().served() == served


@pytest.mark.parametrize("providers", ["fake,openai", "anthropic,gemini", ","])
def test_a_bad_provider_list_stops_the_worker_at_start(
    monkeypatch: pytest.MonkeyPatch, providers: str
) -> None:
    monkeypatch.setenv("WORKER_PROVIDERS", providers)
    with pytest.raises(ValueError, match="WORKER_PROVIDERS"):
        WorkerSettings()


# ---- OpenAI errors, classified like Anthropic's

REQ = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")


def status_error(cls: type[openai.APIStatusError], status: int, **headers: str) -> BaseException:
    body = {"message": "nope", "type": "some_error"}
    return cls("x", response=httpx2.Response(status, headers=headers, request=REQ), body=body)


@pytest.mark.parametrize(
    ("exc", "kind", "retryable", "retry_after", "says"),
    [
        (
            status_error(openai.RateLimitError, 429, **{"retry-after": "2"}),
            "rate_limited",
            True,
            2.0,
            "rate limited (429): some_error: nope",
        ),
        (
            status_error(openai.InternalServerError, 503, **{"retry-after-ms": "250"}),
            "server_error",
            True,
            0.25,
            "(503)",
        ),
        (
            status_error(openai.BadRequestError, 400),
            "client_error",
            False,
            None,
            "error (400): some_error: nope",
        ),
        (status_error(openai.ConflictError, 409), "client_error", True, None, "(409)"),
        (openai.APITimeoutError(request=REQ), "timeout", True, None, "timed out"),
        (openai.APIConnectionError(request=REQ), "connection", True, None, "cannot reach"),
        (
            openai.APIError("boom", REQ, body={"message": "boom", "type": "server_error"}),
            "mid_stream",
            True,
            None,
            "mid-stream: server_error: boom",
        ),
        (httpx2.ReadTimeout("slow", request=REQ), "timeout", True, None, "timed out"),
        (httpx2.RemoteProtocolError("cut", request=REQ), "connection", True, None, "cannot reach"),
    ],
)
def test_openai_errors_are_classified(
    exc: BaseException, kind: str, retryable: bool, retry_after: float | None, says: str
) -> None:
    error = classify(exc)
    assert (error.kind, error.retryable, error.retry_after) == (kind, retryable, retry_after)
    assert says in error.message
