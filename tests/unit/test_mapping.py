"""worker.mapping: Anthropic raw stream events -> contract events, and merge_deltas."""

from __future__ import annotations

import copy
from typing import Any

import anyio
import pytest

from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    message,
    ping,
    text,
    thinking,
    tool_use,
)
from worker.mapping import EventMapper, merge_deltas
from worker.providers.anthropic_stream import AnthropicReader, finish_reason
from worker.providers.parts import Usage

RAW_TYPES = {
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
}


class Mapper(EventMapper):
    """Anthropic's raw events read as its provider reads them, then mapped: the two as
    the worker chains them."""

    def __init__(self, message_id: str, id_prefix: str = "") -> None:
        super().__init__(message_id, id_prefix)
        self.reader = AnthropicReader()

    def feed(self, event: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for read in self.reader.feed(event):
            out += super().feed(read)
        return out


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---- wire JSON builders, as the API sends them


def start(
    input_tokens: int = 10, output_tokens: int = 1, model: str = "claude-m", **cache: int
) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens, **cache},
        },
    }


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, d: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": d}


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str | None, **usage: Any) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": usage,
    }


STOP = {"type": "message_stop"}


def feed_all(mapper: Mapper, raws: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event for raw in raws for event in mapper.feed(raw)]


def tool_call(fragments: list[str]) -> list[dict[str, Any]]:
    return [
        start(),
        block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}),
        *(delta(0, {"type": "input_json_delta", "partial_json": f}) for f in fragments),
        block_stop(0),
        message_delta("tool_use", output_tokens=5),
        STOP,
    ]


# ---- the mapper


def test_full_message_with_thinking_text_and_tool_use() -> None:
    raws = [
        start(input_tokens=42, model="claude-x"),
        {"type": "ping"},
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, {"type": "thinking_delta", "thinking": "Hmm, "}),
        delta(0, {"type": "thinking_delta", "thinking": "weather."}),
        delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}),
        block_stop(0),
        block_start(1, {"type": "redacted_thinking", "data": "EmwKAhgB"}),
        block_stop(1),
        block_start(2, {"type": "text", "text": ""}),
        delta(2, {"type": "text_delta", "text": "Let me "}),
        delta(2, {"type": "text_delta", "text": "check."}),
        block_stop(2),
        block_start(3, {"type": "tool_use", "id": "toolu_7", "name": "get_weather", "input": {}}),
        delta(3, {"type": "input_json_delta", "partial_json": ""}),
        delta(3, {"type": "input_json_delta", "partial_json": '{"city": "Pa'}),
        delta(3, {"type": "input_json_delta", "partial_json": 'ris", "days": 2}'}),
        block_stop(3),
        message_delta("tool_use", output_tokens=57),
        STOP,
    ]
    mapper = Mapper("gen_1")

    events = feed_all(mapper, raws)

    assert events == [
        {"type": "start", "messageId": "gen_1"},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "r0"},
        {"type": "reasoning-delta", "id": "r0", "delta": "Hmm, "},
        {"type": "reasoning-delta", "id": "r0", "delta": "weather."},
        {
            "type": "reasoning-delta",
            "id": "r0",
            "delta": "",
            "providerMetadata": {"anthropic": {"signature": "EqQBCgIYAhIM"}},
        },
        {"type": "reasoning-end", "id": "r0"},
        {
            "type": "reasoning-start",
            "id": "r1",
            "providerMetadata": {"anthropic": {"redactedData": "EmwKAhgB"}},
        },
        {"type": "reasoning-end", "id": "r1"},
        {"type": "text-start", "id": "t2"},
        {"type": "text-delta", "id": "t2", "delta": "Let me "},
        {"type": "text-delta", "id": "t2", "delta": "check."},
        {"type": "text-end", "id": "t2"},
        {"type": "tool-input-start", "toolCallId": "toolu_7", "toolName": "get_weather"},
        {"type": "tool-input-delta", "toolCallId": "toolu_7", "inputTextDelta": '{"city": "Pa'},
        {"type": "tool-input-delta", "toolCallId": "toolu_7", "inputTextDelta": 'ris", "days": 2}'},
        {
            "type": "tool-input-available",
            "toolCallId": "toolu_7",
            "toolName": "get_weather",
            "input": {"city": "Paris", "days": 2},
        },
        {"type": "finish-step"},
        {
            "type": "finish",
            "finishReason": "tool-calls",
            "messageMetadata": {
                "model": "claude-x",
                "usage": Usage(input=42, output=57).ai_sdk(),
            },
        },
    ]
    assert all(next(iter(e)) == "type" for e in events)
    assert mapper.text == "Let me check."
    assert mapper.usage == Usage(input=42, output=57)
    assert mapper.stop_reason == "tool_use"
    assert mapper.finish_reason == "tool-calls"
    assert mapper.model == "claude-x"
    assert mapper.started
    assert mapper.finished
    assert mapper.notes == []


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool-calls"),
        ("refusal", "content-filter"),
        ("pause_turn", "other"),
        ("something_new", "other"),
        (None, "other"),
    ],
)
def test_finish_reason_for_every_stop_reason(stop_reason: str | None, expected: str) -> None:
    mapper = Mapper("m")

    events = feed_all(mapper, [start(), message_delta(stop_reason, output_tokens=3), STOP])

    assert finish_reason(stop_reason) == expected
    assert events[-1]["type"] == "finish"
    assert events[-1]["finishReason"] == expected
    assert mapper.stop_reason == stop_reason
    assert mapper.finish_reason == expected


def test_usage_input_from_start_output_from_the_last_cumulative_delta() -> None:
    mapper = Mapper("m")

    feed_all(mapper, [start(input_tokens=25, output_tokens=1)])
    assert mapper.usage == Usage(input=25, output=1)

    # Cumulative totals replace; null counts (as model_dump() writes absent ones) are ignored.
    mapper.feed(message_delta(None, output_tokens=10, input_tokens=None))
    mapper.feed(message_delta("end_turn", output_tokens=15, cache_read_input_tokens=None))
    assert mapper.usage == Usage(input=25, output=15)

    events = mapper.feed(STOP)
    assert events[-1]["messageMetadata"]["usage"] == Usage(input=25, output=15).ai_sdk()


def test_usage_input_tokens_on_message_delta_win() -> None:
    mapper = Mapper("m")

    events = feed_all(
        mapper,
        [
            start(input_tokens=4),
            message_delta(
                "end_turn",
                output_tokens=9,
                input_tokens=30,
                cache_creation_input_tokens=100,
                cache_read_input_tokens=7,
            ),
            STOP,
        ],
    )

    # All input: Anthropic's uncached input_tokens, and the cache's writes and reads.
    used = Usage(input=137, output=9, cache_read=7, cache_write=100)
    assert mapper.usage == used
    assert events[-1]["messageMetadata"]["usage"] == used.ai_sdk()


def test_anthropic_s_usage_as_the_ai_sdk_counts_it() -> None:
    """U uncached, R read, W written, O out: inputTokens U+R+W, as the AI SDK sums them."""
    mapper = Mapper("m")
    counts = {"cache_read_input_tokens": 900, "cache_creation_input_tokens": 80}
    events = feed_all(
        mapper,
        [start(input_tokens=20, **counts), message_delta("end_turn", output_tokens=31), STOP],
    )
    usage = events[-1]["messageMetadata"]["usage"]
    assert (usage["inputTokens"], usage["outputTokens"], usage["totalTokens"]) == (1000, 31, 1031)
    assert usage["inputTokenDetails"] == {
        "noCacheTokens": 20,
        "cacheReadTokens": 900,
        "cacheWriteTokens": 80,
    }


def test_usage_without_message_delta_keeps_message_start_counts() -> None:
    mapper = Mapper("m")

    events = feed_all(mapper, [start(input_tokens=8, output_tokens=1), STOP])

    assert mapper.usage == Usage(input=8, output=1)
    assert mapper.stop_reason is None
    assert events[-1] == {
        "type": "finish",
        "finishReason": "other",
        "messageMetadata": {"model": "claude-m", "usage": Usage(input=8, output=1).ai_sdk()},
    }


def test_invalid_tool_json_is_passed_on_raw_and_noted() -> None:
    mapper = Mapper("m")

    events = feed_all(mapper, tool_call(['{"city": ', '"Par']))

    available = [e for e in events if e["type"] == "tool-input-available"]
    assert available == [
        {
            "type": "tool-input-available",
            "toolCallId": "toolu_1",
            "toolName": "f",
            "input": '{"city": "Par',
        }
    ]
    assert len(mapper.notes) == 1
    assert "toolu_1" in mapper.notes[0]
    assert "not valid JSON" in mapper.notes[0]
    assert events[-1]["finishReason"] == "tool-calls"


@pytest.mark.parametrize("fragments", [[], [""], ["", "  "]])
def test_empty_tool_input_is_an_empty_object(fragments: list[str]) -> None:
    mapper = Mapper("m")

    events = feed_all(mapper, tool_call(fragments))

    assert [e for e in events if e["type"].startswith("tool-")] == [
        {"type": "tool-input-start", "toolCallId": "toolu_1", "toolName": "f"},
        *(
            {"type": "tool-input-delta", "toolCallId": "toolu_1", "inputTextDelta": f}
            for f in fragments
            if f
        ),
        {"type": "tool-input-available", "toolCallId": "toolu_1", "toolName": "f", "input": {}},
    ]
    assert mapper.notes == []


def test_server_tool_use_is_marked_provider_executed() -> None:
    mapper = Mapper("m")
    block = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}

    events = feed_all(
        mapper,
        [
            start(),
            block_start(0, block),
            delta(0, {"type": "input_json_delta", "partial_json": '{"query": "x"}'}),
            block_stop(0),
            block_start(1, {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1"}),
            block_stop(1),
        ],
    )

    assert events[2:] == [
        {
            "type": "tool-input-start",
            "toolCallId": "srvtoolu_1",
            "toolName": "web_search",
            "providerExecuted": True,
        },
        {
            "type": "tool-input-delta",
            "toolCallId": "srvtoolu_1",
            "inputTextDelta": '{"query": "x"}',
        },
        {
            "type": "tool-input-available",
            "toolCallId": "srvtoolu_1",
            "toolName": "web_search",
            "input": {"query": "x"},
            "providerExecuted": True,
        },
    ]


def test_pings_unknown_and_derived_events_map_to_nothing() -> None:
    mapper = Mapper("m")
    mapper.feed(start())
    mapper.feed(block_start(0, {"type": "text", "text": ""}))
    ignored: list[dict[str, Any]] = [
        {"type": "ping"},
        {"type": "error", "error": {"type": "overloaded_error", "message": "x"}},
        {"type": "something_new", "index": 0},
        {"type": "text", "text": "a", "snapshot": "a"},
        {"type": "thinking", "thinking": "a", "snapshot": "a"},
        {"type": "input_json", "partial_json": "{", "snapshot": {}},
        {"type": "signature", "signature": "s"},
        {"type": "citation", "citation": {}, "snapshot": []},
        # a citation with nothing usable (those that name a source: tests/unit/test_sources.py)
        delta(0, {"type": "citations_delta", "citation": {"type": "web_search_result_location"}}),
        delta(5, {"type": "text_delta", "text": "no such block"}),
        block_stop(5),
        {},
    ]

    assert [mapper.feed(raw) for raw in ignored] == [[] for _ in ignored]
    assert mapper.text == ""


def test_text_of_several_text_blocks_accumulates() -> None:
    mapper = Mapper("m")

    events = feed_all(
        mapper,
        [
            start(),
            block_start(0, {"type": "text", "text": ""}),
            delta(0, {"type": "text_delta", "text": "One. "}),
            block_stop(0),
            block_start(1, {"type": "tool_use", "id": "toolu_2", "name": "g", "input": {}}),
            block_stop(1),
            block_start(2, {"type": "text", "text": ""}),
            delta(2, {"type": "text_delta", "text": "Two."}),
            block_stop(2),
        ],
    )

    assert mapper.text == "One. Two."
    assert [e["id"] for e in events if e["type"] == "text-start"] == ["t0", "t2"]
    assert not mapper.finished


def test_a_second_message_start_opens_a_step_but_not_a_second_start() -> None:
    mapper = Mapper("m")

    events = feed_all(mapper, [start(), STOP, start(input_tokens=50), STOP])

    assert [e["type"] for e in events] == [
        "start",
        "start-step",
        "finish-step",
        "finish",
        "start-step",
        "finish-step",
        "finish",
    ]
    assert mapper.usage.input == 50


# ---- merge_deltas


def test_merge_deltas_merges_adjacent_runs_only_and_keeps_order() -> None:
    events: list[dict[str, Any]] = [
        {"type": "start", "messageId": "m"},
        {"type": "reasoning-delta", "id": "r0", "delta": "a"},
        {"type": "reasoning-delta", "id": "r0", "delta": "b"},
        {"type": "reasoning-end", "id": "r0"},
        {"type": "text-start", "id": "t1"},
        {"type": "text-delta", "id": "t1", "delta": "He"},
        {"type": "text-delta", "id": "t1", "delta": "ll"},
        {"type": "text-delta", "id": "t1", "delta": "o"},
        {"type": "text-delta", "id": "t2", "delta": "other block"},
        {"type": "text-delta", "id": "t1", "delta": " again"},
        {"type": "data-progress", "data": {"p": 1}},
        {"type": "text-delta", "id": "t1", "delta": "!"},
        {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": '{"a"'},
        {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": ": 1}"},
        {"type": "tool-input-delta", "toolCallId": "c2", "inputTextDelta": "{}"},
        {"type": "reasoning-delta", "id": "t1", "delta": "same id, other type"},
        {"type": "finish", "finishReason": "stop"},
    ]
    before = copy.deepcopy(events)

    merged = merge_deltas(events)

    assert merged == [
        {"type": "start", "messageId": "m"},
        {"type": "reasoning-delta", "id": "r0", "delta": "ab"},
        {"type": "reasoning-end", "id": "r0"},
        {"type": "text-start", "id": "t1"},
        {"type": "text-delta", "id": "t1", "delta": "Hello"},
        {"type": "text-delta", "id": "t2", "delta": "other block"},
        {"type": "text-delta", "id": "t1", "delta": " again"},
        {"type": "data-progress", "data": {"p": 1}},
        {"type": "text-delta", "id": "t1", "delta": "!"},
        {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": '{"a": 1}'},
        {"type": "tool-input-delta", "toolCallId": "c2", "inputTextDelta": "{}"},
        {"type": "reasoning-delta", "id": "t1", "delta": "same id, other type"},
        {"type": "finish", "finishReason": "stop"},
    ]
    assert events == before  # not mutated
    assert all(m is not e for m in merged for e in events)
    assert all(next(iter(e)) == "type" for e in merged)


def test_merge_deltas_edge_cases() -> None:
    assert merge_deltas([]) == []
    single = [{"type": "text-delta", "id": "t0", "delta": "x"}]
    assert merge_deltas(single) == single
    assert merge_deltas(single) is not single
    # Mapper output round-trips: merged deltas rebuild the same text.
    mapper = Mapper("m")
    raws = [
        start(),
        block_start(0, {"type": "text", "text": ""}),
        *(delta(0, {"type": "text_delta", "text": c}) for c in "streaming"),
        block_stop(0),
    ]
    merged = merge_deltas(feed_all(mapper, raws))
    assert merged[2:] == [
        {"type": "text-start", "id": "t0"},
        {"type": "text-delta", "id": "t0", "delta": "streaming"},
        {"type": "text-end", "id": "t0"},
    ]


def test_merge_deltas_never_merges_a_delta_that_carries_provider_metadata() -> None:
    signed = {
        "type": "reasoning-delta",
        "id": "r0",
        "delta": "",
        "providerMetadata": {"anthropic": {"signature": "sig"}},
    }
    events: list[dict[str, Any]] = [
        {"type": "reasoning-delta", "id": "r0", "delta": "a"},
        {"type": "reasoning-delta", "id": "r0", "delta": "b"},
        signed,
        {"type": "reasoning-delta", "id": "r0", "delta": "c"},
        {"type": "reasoning-delta", "id": "r0", "delta": "d"},
        dict(signed),
        {"type": "reasoning-end", "id": "r0"},
        {"type": "text-delta", "id": "t1", "delta": "x", "providerMetadata": {"p": {}}},
        {"type": "text-delta", "id": "t1", "delta": "y"},
    ]

    merged = merge_deltas(events)

    assert merged == [
        {"type": "reasoning-delta", "id": "r0", "delta": "ab"},
        signed,
        {"type": "reasoning-delta", "id": "r0", "delta": "cd"},
        signed,
        {"type": "reasoning-end", "id": "r0"},
        {"type": "text-delta", "id": "t1", "delta": "x", "providerMetadata": {"p": {}}},
        {"type": "text-delta", "id": "t1", "delta": "y"},
    ]


def test_a_thinking_block_without_signature_has_no_metadata_delta() -> None:
    mapper = Mapper("m")
    events = feed_all(
        mapper,
        [
            start(),
            block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
            delta(0, {"type": "thinking_delta", "thinking": "hm"}),
            delta(0, {"type": "signature_delta", "signature": ""}),
            block_stop(0),
        ],
    )
    assert events[2:] == [
        {"type": "reasoning-start", "id": "r0"},
        {"type": "reasoning-delta", "id": "r0", "delta": "hm"},
        {"type": "reasoning-end", "id": "r0"},
    ]


# ---- against the real SDK


@pytest.mark.anyio
async def test_mapper_fed_by_the_real_sdk_stream() -> None:
    import anthropic

    from worker.providers.anthropic import _wire

    script = message(
        [
            thinking(["Think", "ing"], signature="sig"),
            text(["Hello", ", ", "world"]),
            tool_use("toolu_5", "lookup", ["", '{"q": ', '"x"}']),
        ],
        input_tokens=21,
        output_tokens=13,
        stop_reason="tool_use",
        model="claude-real",
    )
    script.insert(4, ping())
    with FakeAnthropicServer() as srv:
        srv.enqueue(script)
        async with anthropic.AsyncAnthropic(
            base_url=srv.base_url, api_key="test", max_retries=0
        ) as client:
            with anyio.fail_after(10):
                async with client.messages.stream(
                    model="claude-real",
                    max_tokens=100,
                    messages=[{"role": "user", "content": "Hi"}],
                ) as stream:
                    sdk_events = [event async for event in stream]
    dumped = [event.model_dump() for event in sdk_events]
    raws = [e for e in sdk_events if e.type in RAW_TYPES]
    # The provider builds the hot deltas' wire JSON by hand: the same as model_dump's.
    assert [_wire(e) for e in raws] == [e.model_dump(mode="json", exclude_none=False) for e in raws]

    raw_only = Mapper("gen_sdk")
    everything = Mapper("gen_sdk")
    events = feed_all(raw_only, [d for d in dumped if d["type"] in RAW_TYPES])
    assert feed_all(everything, dumped) == events  # derived events add nothing

    assert events == [
        {"type": "start", "messageId": "gen_sdk"},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "r0"},
        {"type": "reasoning-delta", "id": "r0", "delta": "Think"},
        {"type": "reasoning-delta", "id": "r0", "delta": "ing"},
        {
            "type": "reasoning-delta",
            "id": "r0",
            "delta": "",
            "providerMetadata": {"anthropic": {"signature": "sig"}},
        },
        {"type": "reasoning-end", "id": "r0"},
        {"type": "text-start", "id": "t1"},
        {"type": "text-delta", "id": "t1", "delta": "Hello"},
        {"type": "text-delta", "id": "t1", "delta": ", "},
        {"type": "text-delta", "id": "t1", "delta": "world"},
        {"type": "text-end", "id": "t1"},
        {"type": "tool-input-start", "toolCallId": "toolu_5", "toolName": "lookup"},
        {"type": "tool-input-delta", "toolCallId": "toolu_5", "inputTextDelta": '{"q": '},
        {"type": "tool-input-delta", "toolCallId": "toolu_5", "inputTextDelta": '"x"}'},
        {
            "type": "tool-input-available",
            "toolCallId": "toolu_5",
            "toolName": "lookup",
            "input": {"q": "x"},
        },
        {"type": "finish-step"},
        {
            "type": "finish",
            "finishReason": "tool-calls",
            "messageMetadata": {
                "model": "claude-real",
                "usage": Usage(input=21, output=13).ai_sdk(),
            },
        },
    ]
    assert raw_only.text == "Hello, world"
    assert raw_only.usage == Usage(input=21, output=13)
    assert raw_only.stop_reason == "tool_use"
    assert raw_only.model == "claude-real"
    assert raw_only.notes == []
