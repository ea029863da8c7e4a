"""The prompt cache's breakpoints on Anthropic requests (``worker.providers.anthropic_cache``),
and the OpenAI providers' usage with cache reads and reasoning; the breakpoints checked
against the local server's model of Anthropic's cache (``tests/support/prompt_cache.py``),
turn by turn."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from tests.support.prompt_cache import AnthropicCache, breakpoints
from worker.providers.anthropic_cache import EPHEMERAL, MAX_BREAKPOINTS, marked, with_breakpoints
from worker.providers.openai_responses_stream import responses_usage
from worker.providers.openai_stream import chat_usage
from worker.usage import Usage

SYSTEM = "You answer questions about streams. " * 200


def turn(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": text}


def chat(turns: int) -> list[dict[str, Any]]:
    """A chat's messages as its ``turns``-th submit sends them."""
    messages = []
    for n in range(1, turns):
        messages += [turn("user", f"question {n} " * 30), turn("assistant", f"answer {n} " * 60)]
    return [*messages, turn("user", f"question {turns} " * 30)]


def sdk_params(request: dict[str, Any]) -> dict[str, Any]:
    """The provider's ``sdk_params``, imported when a test runs: its module imports the
    Anthropic SDK, which no other test process collecting this module needs."""
    from worker.providers.anthropic import sdk_params as made

    return made(request)


def params(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    request = {"model": "m", "max_tokens": 100, "system": SYSTEM, "messages": messages, **extra}
    return with_breakpoints(sdk_params(request))


def test_a_chat_s_second_turn_marks_its_history() -> None:
    sent = params(chat(2))
    assert breakpoints({**sent, "stream": True}) == [
        "system[0]",
        "messages[1].content[0]",
        "messages[2].content[0]",
    ]


def test_never_more_than_four_and_a_request_s_own_kept() -> None:
    tools = [{"name": f"t{i}", "input_schema": {"type": "object"}} for i in range(3)]
    sent = params(chat(5), tools=tools)
    assert marked(sent) == MAX_BREAKPOINTS
    assert sent["tools"][-1]["cache_control"] == EPHEMERAL
    own = chat(5)
    own[0] = {
        "role": "user",
        "content": [{"type": "text", "text": "q", "cache_control": EPHEMERAL}],
    }
    own[2] = {
        "role": "user",
        "content": [{"type": "text", "text": "r", "cache_control": EPHEMERAL}],
    }
    sent = params(own, tools=tools)
    assert marked(sent) == MAX_BREAKPOINTS
    assert [b for b in breakpoints(sent) if b.startswith("messages")] == [
        "messages[0].content[0]",
        "messages[2].content[0]",
        "messages[7].content[0]",
        "messages[8].content[0]",
    ]
    full = [
        {"role": "user", "content": [{"type": "text", "text": str(i), "cache_control": EPHEMERAL}]}
        for i in range(4)
    ]
    assert breakpoints(params(full)) == breakpoints({"messages": full})


def test_thinking_carries_none_and_the_stored_request_is_left_alone() -> None:
    thought = {"type": "thinking", "thinking": "hm", "signature": "s"}
    answer = {"role": "assistant", "content": [{"type": "text", "text": "a"}, thought]}
    request = {
        "model": "m",
        "max_tokens": 9,
        "messages": [turn("user", "q"), answer, turn("user", "r")],
    }
    kept = copy.deepcopy(request)
    sent = with_breakpoints(sdk_params(request))
    assert sent["messages"][1]["content"][0]["cache_control"] == EPHEMERAL
    assert "cache_control" not in sent["messages"][1]["content"][1]
    assert request == kept
    only_thought = {"role": "assistant", "content": [thought]}
    sent = with_breakpoints({"messages": [turn("user", "q"), only_thought, turn("user", "r")]})
    assert breakpoints(sent) == ["messages[2].content[0]"]


@pytest.mark.parametrize("turns", [20])
def test_each_turn_reads_what_the_one_before_wrote(turns: int) -> None:
    """Over a whole chat, every turn after the first reads all but its last two messages
    from the cache, by Anthropic's rules as the local server keeps them."""
    cache = AnthropicCache()
    bills = []
    for n in range(1, turns + 1):
        messages = chat(n)
        sent = params(messages)
        assert 1 <= marked(sent) <= MAX_BREAKPOINTS
        bills.append(cache.bill({**sent, "stream": True}))
    plain = AnthropicCache()
    uncached = [plain.bill({"system": SYSTEM, "messages": chat(n)}) for n in range(1, turns + 1)]
    assert all(b.cache_read == 0 for b in uncached)
    for before, bill in itertools.pairwise(bills):
        assert bill.cache_read == before.total  # the whole prompt the turn before sent
        assert bill.plain == 0
    assert sum(b.cache_read for b in bills) > 0.8 * sum(b.total for b in bills)


def test_openai_usage_with_its_cache_and_reasoning() -> None:
    chat_counts = {
        "prompt_tokens": 1200,
        "completion_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 12},
    }
    assert chat_usage(chat_counts) == Usage(1200, 40, cache_read=1024, reasoning=12)
    assert chat_usage({"prompt_tokens": 5, "completion_tokens": 2}) == Usage(5, 2)  # Ollama's
    response = {
        "input_tokens": 900,
        "output_tokens": 30,
        "input_tokens_details": {"cached_tokens": 768},
        "output_tokens_details": {"reasoning_tokens": 20},
    }
    assert responses_usage(response) == Usage(900, 30, cache_read=768, reasoning=20)
