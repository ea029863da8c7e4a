"""The pure parts behind the providers: request validation (``generations.request``), the
request's translation to Chat Completions (``openai_request``), Chat Completions chunks
as Anthropic raw events (``openai_stream``, then the shared mapping), and the content fold
(``generations.content``) that turns a generation's events back into the assistant turn."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from broadcaster.generations.request import Defaults, RequestInvalid, validate_request
from tests.support.provider_requests import DEFAULTS, TOOL
from worker.providers.fake import FakeProvider, fake_events
from worker.providers.openai_request import Untranslatable, chat_params, reasoning_effort
from worker.providers.parts import PartStart, Stop
from worker.settings import WorkerSettings

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 8).decode()


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
    with pytest.raises(Untranslatable, match="web_search_20250305"):
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
        read = [event async for event in events]
    assert [e.kind for e in read if isinstance(e, PartStart)] == ["text"]
    assert [(e.finish, e.reason) for e in read if isinstance(e, Stop)] == [("stop", "end_turn")]


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
