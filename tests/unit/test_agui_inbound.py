"""AG-UI events in, as UI message chunks (broadcaster/agui/inbound.py): pydantic-ai's AG-UI
adapter's own events through ``ui_chunks`` (what a worker running an AG-UI agent calls),
reasoning and chunked events written with ``ag-ui-protocol``'s models and encoder, and the
state rebuilt from the chunks alone. tests/clients/test_agui_in.py reads the same through
the AI SDK's reader and AG-UI's client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broadcaster.agui import inbound
from broadcaster.agui.inbound import AgUiInvalid, ChunkMapper, map_events, ui_chunks
from tests.support import agui_agent

pytestmark = pytest.mark.unit


async def _all(source: Any) -> list[dict[str, Any]]:
    return [chunk async for chunk in ui_chunks(source)]


def test_pydantic_ais_agui_events_are_an_ai_sdk_answer() -> None:
    chunks = asyncio.run(_all(agui_agent.events()))
    kinds = [c["type"] for c in chunks]
    assert kinds[0] == "start" and kinds[-1] == "finish" and kinds.count("finish") == 1
    said = "".join(c["delta"] for c in chunks if c["type"] == "text-delta")
    assert said == agui_agent.ANSWER
    (call,) = [c for c in chunks if c["type"] == "tool-input-available"]
    assert call["toolName"] == "weather" and call["input"] == {"city": "Paris"}
    (result,) = [c for c in chunks if c["type"] == "tool-output-available"]
    assert result["toolCallId"] == call["toolCallId"] and result["output"]["temp"] == 21
    # Every text part that starts ends, before the end.
    assert kinds.count("text-start") == kinds.count("text-end") == 2


def test_reasoning_chunks_and_sse_text_from_the_protocols_encoder() -> None:
    from ag_ui.core import (
        ReasoningEncryptedValueEvent,
        ReasoningMessageContentEvent,
        ReasoningMessageEndEvent,
        ReasoningMessageStartEvent,
        RunFinishedEvent,
        RunStartedEvent,
        TextMessageChunkEvent,
        ToolCallChunkEvent,
    )
    from ag_ui.encoder import EventEncoder

    encode = EventEncoder().encode
    events = [
        RunStartedEvent(thread_id="t", run_id="r"),
        ReasoningMessageStartEvent(message_id="r1", role="reasoning"),
        ReasoningMessageContentEvent(message_id="r1", delta="Hm."),
        ReasoningEncryptedValueEvent(subtype="message", entity_id="r1", encrypted_value="sig"),
        ReasoningMessageEndEvent(message_id="r1"),
        TextMessageChunkEvent(message_id="m1", delta="Hel"),
        TextMessageChunkEvent(delta="lo"),
        ToolCallChunkEvent(tool_call_id="c1", tool_call_name="add", delta='{"a":'),
        ToolCallChunkEvent(delta="1}"),
        RunFinishedEvent(thread_id="t", run_id="r"),
    ]
    chunks = asyncio.run(_all([encode(e) for e in events]))  # SSE text, one frame each
    assert chunks == asyncio.run(_all(events))  # the same from the models
    kinds = [c["type"] for c in chunks]
    assert kinds == [
        "start",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-delta",
        "reasoning-end",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-delta",
        "tool-input-available",
        "finish",
    ]
    assert chunks[3]["providerMetadata"] == {"agui": {"encryptedValue": "sig"}}
    assert chunks[12]["input"] == {"a": 1}


def test_the_state_is_rebuilt_from_the_chunks_and_events_after_the_end_add_nothing() -> None:
    first = ChunkMapper()
    made = map_events(
        first,
        [
            {"type": "RUN_STARTED", "threadId": "t", "runId": "r"},
            {"type": "TEXT_MESSAGE_START", "messageId": "m"},
            {"type": "TOOL_CALL_START", "toolCallId": "c", "toolCallName": "f"},
            {"type": "TOOL_CALL_ARGS", "toolCallId": "c", "delta": '{"x":'},
        ],
    )
    again = ChunkMapper()
    for chunk in made:
        again.observe(chunk)
    rest = [
        {"type": "TOOL_CALL_ARGS", "toolCallId": "c", "delta": " 2}"},
        {"type": "RUN_FINISHED", "threadId": "t", "runId": "r"},
    ]
    tail = map_events(again, rest)
    assert tail == map_events(first.copy(), rest)
    assert tail[-3:] == [
        {"type": "tool-input-available", "toolCallId": "c", "toolName": "f", "input": {"x": 2}},
        {"type": "text-end", "id": "m"},
        {"type": "finish"},
    ]
    assert again.feed({"type": "TEXT_MESSAGE_START", "messageId": "n"}) == []
    with pytest.raises(AgUiInvalid):
        ChunkMapper().feed({"type": "TOOL_CALL_START", "toolCallId": "c"})
    cut = asyncio.run(_all([{"type": "RUN_STARTED", "threadId": "t", "runId": "r"}]))
    assert cut[-1]["type"] == "error"  # events that stop before the run's end


def test_arguments_no_parser_takes_end_their_call_and_the_next_event_is_taken() -> None:
    """Arguments streamed in deltas that nest deeper than Python's stack (or hold NaN, or
    pass the size bound) end the call with ``tool-input-error``; the state rebuilt from
    those chunks maps the run's end as any other."""
    cases = ["[" * 5000, '{"sides": NaN}', '{"a": "' + "x" * (inbound.MAX_ARGS_CHARS + 1) + '"}']
    for args in cases:
        mapper = ChunkMapper()
        start = {"type": "TOOL_CALL_START", "toolCallId": "c", "toolCallName": "f"}
        chunks = map_events(mapper, [start])
        for i in range(0, len(args), 100_000):
            chunks += mapper.feed(
                {"type": "TOOL_CALL_ARGS", "toolCallId": "c", "delta": args[i : i + 100_000]}
            )
        rebuilt = ChunkMapper()
        for chunk in chunks:
            rebuilt.observe(chunk)
        ended = rebuilt.feed({"type": "TOOL_CALL_END", "toolCallId": "c"})
        assert [c["type"] for c in ended] == ["tool-input-error"], args[:20]
        finished = rebuilt.feed({"type": "RUN_FINISHED"})
        assert finished[-1]["type"] == "finish"


@pytest.mark.parametrize("content", ["[NaN]", '{"a": 1e999}', "[" * 200 + "]" * 200])
def test_a_tool_result_of_json_no_reader_takes_is_invalid(content: str) -> None:
    mapper = ChunkMapper()
    mapper.feed({"type": "TOOL_CALL_START", "toolCallId": "c", "toolCallName": "f"})
    with pytest.raises(AgUiInvalid):
        mapper.feed({"type": "TOOL_CALL_RESULT", "toolCallId": "c", "content": content})
    not_json = mapper.feed({"type": "TOOL_CALL_RESULT", "toolCallId": "c", "content": "plain"})
    assert not_json[-1]["output"] == "plain"
