"""The AG-UI view of a generation (``broadcaster.agui``): each AI SDK chunk mapped, every
event checked against AG-UI's own Python models (``ag-ui-protocol``), and the resume
point: a cut anywhere, even between two events of one chunk, re-opened by the prelude,
gives a stream that passes the rules of AG-UI's client verification (checked here by a
port of them; tests/clients/test_agui.py runs the real one)."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from broadcaster.agui import frames
from broadcaster.agui.projection import Mapper, Open, interrupted, prelude
from broadcaster.agui.runs import chat_body, decisions, parse_input
from broadcaster.agui.views import KEEP_EVENTS, Translation, Translations, Viewer
from broadcaster.core import sse
from broadcaster.core.events import Event as LogEvent
from broadcaster.core.events import dump_event
from broadcaster.generations.request import RequestInvalid


@functools.cache
def agui_events() -> TypeAdapter[Any]:
    """AG-UI's own event model (``ag-ui-protocol``'s, imported by the first check)."""
    from ag_ui.core import Event

    return TypeAdapter(Event)


SIGNATURE = "c2lnbmVkIGJ5IEFudGhyb3BpYw=="

GENERATION: list[dict[str, Any]] = [
    {"type": "data-queued", "data": {"position": 1}, "transient": True},
    {"type": "start", "messageId": "m1"},
    {"type": "start-step"},
    {"type": "reasoning-start", "id": "r0"},
    {"type": "reasoning-delta", "id": "r0", "delta": "Let me "},
    {"type": "reasoning-delta", "id": "r0", "delta": "think."},
    {
        "type": "reasoning-delta",
        "id": "r0",
        "delta": "",
        "providerMetadata": {"anthropic": {"signature": SIGNATURE}},
    },
    {"type": "reasoning-end", "id": "r0"},
    {"type": "text-start", "id": "t1"},
    {"type": "text-delta", "id": "t1", "delta": "Hé"},
    {"type": "text-delta", "id": "t1", "delta": "llo"},
    {"type": "text-end", "id": "t1"},
    {"type": "tool-input-start", "toolCallId": "toolu_1", "toolName": "weather"},
    {"type": "tool-input-delta", "toolCallId": "toolu_1", "inputTextDelta": '{"city"'},
    {"type": "tool-input-delta", "toolCallId": "toolu_1", "inputTextDelta": ': "Paris"}'},
    {
        "type": "tool-input-available",
        "toolCallId": "toolu_1",
        "toolName": "weather",
        "input": {"city": "Paris"},
    },
    {"type": "tool-output-available", "toolCallId": "toolu_1", "output": {"temp": 21}},
    {"type": "finish-step"},
    {"type": "start-step"},
    {"type": "text-start", "id": "t1"},
    {"type": "text-delta", "id": "t1", "delta": "Sunny."},
    {"type": "text-end", "id": "t1"},
    {"type": "finish-step"},
    {"type": "finish", "finishReason": "stop"},
]


def mapped(chunks: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    mapper = Mapper("chat1", "gen1")
    return [mapper.feed(seq, chunk) for seq, chunk in enumerate(chunks, start=1)]


def verify(events: list[dict[str, Any]]) -> None:
    """The rules of ``@ag-ui/client``'s ``verifyEvents`` that a mapping can break."""
    assert events and events[0]["type"] == "RUN_STARTED", events[:1]
    state = Open()
    ended = False
    for event in events:
        agui_events().validate_python(event)  # AG-UI's own model takes it, field names and all
        kind = event["type"]
        assert not ended, f"{kind} after the run's end"
        if kind in ("TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END"):
            assert event["messageId"] in state.texts, event
        if kind == "TEXT_MESSAGE_START":
            assert event["messageId"] not in state.texts, event
        if kind in ("TOOL_CALL_ARGS", "TOOL_CALL_END"):
            assert event["toolCallId"] in dict(state.calls), event
        if kind in ("REASONING_MESSAGE_CONTENT", "REASONING_MESSAGE_END"):
            assert dict(state.reasoning).get(event["messageId"]) is True, event
        if kind == "STEP_FINISHED":
            assert state.step == event["stepName"], event
        if kind == "RUN_FINISHED":
            assert (state.texts, state.calls, state.reasoning, state.step) == ((), (), (), None)
        ended = kind in ("RUN_FINISHED", "RUN_ERROR")
        state = state.apply(event)
    assert ended, "no RUN_FINISHED or RUN_ERROR at the end"


def test_a_generation_maps_to_one_verified_run() -> None:
    events = [e for chunk in mapped(GENERATION) for e in chunk]
    verify(events)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["RUN_STARTED", "CUSTOM"]  # a chunk before start: the run first
    assert events[0] == {"type": "RUN_STARTED", "threadId": "chat1", "runId": "gen1"}
    assert kinds.count("RUN_FINISHED") == 1 and kinds[-1] == "RUN_FINISHED"
    assert events[-1]["outcome"] == {"type": "success"}
    text = "".join(e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT")
    assert text == "HélloSunny."
    starts = [e["messageId"] for e in events if e["type"] == "TEXT_MESSAGE_START"]
    assert len(set(starts)) == 2  # the AI SDK's repeated part id, two AG-UI messages
    args = "".join(e["delta"] for e in events if e["type"] == "TOOL_CALL_ARGS")
    assert json.loads(args) == {"city": "Paris"}
    result = next(e for e in events if e["type"] == "TOOL_CALL_RESULT")
    assert (result["toolCallId"], json.loads(result["content"])) == ("toolu_1", {"temp": 21})
    secret = next(e for e in events if e["type"] == "REASONING_ENCRYPTED_VALUE")
    assert secret["encryptedValue"] == SIGNATURE and secret["subtype"] == "message"
    reasoning = [e["type"] for e in events if e["type"].startswith("REASONING")]
    assert reasoning == [
        "REASONING_START",
        "REASONING_MESSAGE_START",
        "REASONING_MESSAGE_CONTENT",
        "REASONING_MESSAGE_CONTENT",
        "REASONING_ENCRYPTED_VALUE",
        "REASONING_MESSAGE_END",
        "REASONING_END",
    ]
    assert kinds.count("STEP_STARTED") == kinds.count("STEP_FINISHED") == 2
    custom = next(e for e in events if e["type"] == "CUSTOM")
    assert custom == {"type": "CUSTOM", "name": "data-queued", "value": {"position": 1}}


@pytest.mark.parametrize("end", ["abort", "error"])
def test_an_end_mid_message_closes_what_is_open(end: str) -> None:
    cut = [*GENERATION[:14], {"type": end, "reason": "cancelled", "errorText": "boom"}]
    events = [e for chunk in mapped(cut) for e in chunk]
    verify(events)
    if end == "abort":
        assert events[-1]["outcome"] == {"type": "cancelled"}
        closed = [e["type"] for e in events[-3:-1]]
        assert closed == ["TOOL_CALL_END", "STEP_FINISHED"]
    else:
        assert events[-1] == {"type": "RUN_ERROR", "message": "boom", "code": "error"}


def test_a_resume_anywhere_passes_verification_and_loses_nothing() -> None:
    """Cut after every AG-UI event (whole chunks and inside them): the prelude at the
    cut, then the rest, is a verified run, and holds every delta after the cut once."""
    per_chunk = mapped(GENERATION)
    flat = [(seq, n, e) for seq, chunk in enumerate(per_chunk, 1) for n, e in enumerate(chunk)]
    for cut in range(len(flat) - 1):
        state = Open()
        for _, _, event in flat[: cut + 1]:
            state = state.apply(event)
        rest = [e for _, _, e in flat[cut + 1 :]]
        joined = prelude(state) + rest
        verify(joined)
        seen = "".join(e["delta"] for e in (x[2] for x in flat[: cut + 1]) if "delta" in e)
        after = "".join(e["delta"] for e in rest if "delta" in e)
        everything = "".join(e["delta"] for _, _, e in flat if "delta" in e)
        assert seen + after == everything


def test_a_run_ends_at_a_wait_with_an_interrupt() -> None:
    waiting = [*GENERATION[1:16], {"type": "tool-approval-request", "approvalId": "ap1",
                                   "toolCallId": "toolu_1"}]  # fmt: skip
    mapper = Mapper("chat1", "gen1")
    events = [e for seq, c in enumerate(waiting, 1) for e in mapper.feed(seq, c)]
    ended = interrupted(mapper.state, [("ap1", "toolu_1")])
    verify(events + ended)
    outcome = ended[-1]["outcome"]
    assert outcome == {
        "type": "interrupt",
        "interrupts": [{"id": "ap1", "reason": "tool_approval", "toolCallId": "toolu_1"}],
    }


def test_a_call_that_was_never_streamed_gets_its_start_and_args() -> None:
    chunk = {"type": "tool-input-available", "toolCallId": "c9", "toolName": "f", "input": {}}
    events = mapped([{"type": "start"}, {"type": "start-step"}, chunk])[2]
    assert [e["type"] for e in events] == ["TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END"]


def test_frames_carry_resumable_ids() -> None:
    events = [{"type": "REASONING_MESSAGE_END", "messageId": "x"}, {"type": "REASONING_END",
              "messageId": "x"}]  # fmt: skip
    body = frames.encode(events, b"7.0badc0de")
    assert body.startswith(b"id: 7.0badc0de:0\ndata: {")
    assert b"\nid: 7.0badc0de\ndata: " in body
    assert frames.drop(body, 1) == body.split(b"\n\n", 1)[1]
    assert frames.parse_cursor("7.0badc0de:0") == ("7.0badc0de", 0)
    assert frames.parse_cursor("7.0badc0de") == ("7.0badc0de", None)
    assert frames.parse_cursor(None) == (None, None)
    for bad in ("x", "7:a", "7:99999", "-1"):
        assert frames.parse_cursor(bad) is None, bad
    chunk = b"id: 3.aa\nevent: text-delta\ndata: {}\n\n: ping\n\ndata: [DONE]\n\n"
    assert frames.aisdk_frames(chunk) == [(3, b"3.aa", b"{}", b"", b""), b": ping\n\n"]


_CHUNKS = st.one_of(
    st.builds(lambda d: {"type": "text-delta", "id": "t0", "delta": d}, st.text(max_size=12)),
    st.builds(
        lambda d: {"type": "text-delta", "id": "t0", "delta": d, "providerMetadata": {"a": 1}},
        st.text(max_size=4),
    ),
    st.builds(lambda d: {"type": "data-x", "data": d}, st.text(max_size=6)),
    st.just({"type": "finish"}),
)


@given(st.lists(st.tuples(_CHUNKS, st.sampled_from(["", "0badc0de"])), min_size=1, max_size=8))
def test_a_run_of_events_is_read_as_frame_by_frame(chunks: list[tuple[Any, str]]) -> None:
    """The pattern that reads a run of events at once finds what reading each frame
    does (``event_frame``); a chunk with anything else in it is read frame by frame."""
    events = [
        LogEvent(seq, *dump_event(chunk), tag=tag) for seq, (chunk, tag) in enumerate(chunks, 1)
    ]
    run = b"".join(sse.encode(e) for e in events)
    expected = [frames.event_frame(e.seq, sse.event_id(e.seq, e.tag), e.data) for e in events]
    assert frames.aisdk_frames(run) == expected
    assert frames.aisdk_frames(sse.PING + run) == [sse.PING, *expected]


_DELTA = st.builds(
    lambda part, d: {"type": "text-delta", "id": part, "delta": d},
    st.sampled_from(["t0"] * 8 + ["t1", "x:2"]),
    st.text(min_size=1, max_size=8)
    | st.sampled_from(["", '"}\n\nid: 9', '","id":"t1', "\\", 'a"b']),
)
_DELTAS = st.one_of(*[_DELTA] * 12, _CHUNKS)
"""Mostly text deltas of one open part, so that runs of them are common."""


@given(
    st.lists(st.tuples(_DELTAS, st.sampled_from(["", "0badc0de"])), min_size=1, max_size=24),
    st.lists(st.integers(1, 6), min_size=1, max_size=24),
)
def test_a_run_of_text_deltas_maps_as_frame_by_frame(
    chunks: list[tuple[Any, str]], cuts: list[int]
) -> None:
    """A run of text deltas mapped at once, as bytes (``Translation.add_run``), gives what
    mapping each event does, byte for byte, and each event's frames are found again in
    what the translation keeps; any other run is mapped frame by frame."""
    opening = [{"type": "start"}, {"type": "text-start", "id": "t0"}, {"type": "text-start",
               "id": "x:2"}]  # fmt: skip
    events = [
        LogEvent(seq, *dump_event(chunk), tag=tag)
        for seq, (chunk, tag) in enumerate([*((c, "t") for c in opening), *chunks], 1)
    ]
    one_by_one, whole = Translation(Mapper("t", "g")), Translation(Mapper("t", "g"))
    expected = {
        e.seq: one_by_one.add(frames.event_frame(e.seq, sse.event_id(e.seq, e.tag), e.data)).frames
        for e in events
    }
    viewer, at, got = Viewer(whole, whole), 0, []
    for cut in cuts * len(events):
        if at >= len(events):
            break
        got.append(viewer.direct(b"".join(sse.encode(e) for e in events[at : at + cut])))
        at += cut
    assert b"".join(g or b"" for g in got) == b"".join(expected.values())
    kept = {seq: whole.find(seq) for seq in expected}
    assert {seq: found.at(seq) for seq, found in kept.items() if found} == expected
    assert whole.held == len(expected) and whole.find(len(expected) + 1) is None


def test_a_run_with_a_gap_is_no_run_of_text_deltas() -> None:
    delta = [{"type": "text-delta", "id": "t0", "delta": "a"}] * 3
    run = [LogEvent(seq, *dump_event(c)) for seq, c in zip((4, 5, 7), delta, strict=True)]
    assert frames.delta_run(b"".join(sse.encode(e) for e in run[:2])) == (4, 5, b"t0")
    assert frames.delta_run(b"".join(sse.encode(e) for e in run)) is None


def test_translations_are_bounded() -> None:
    shared = Translations(limit=2)
    first = shared.get("a", "a")
    shared.get("b", "b")
    shared.get("c", "c")
    assert list(shared.streams) == ["b", "c"] and shared.get("a", "a") is not first
    t = Translation(Mapper("t", "g"))
    delta = b'{"type":"data-x","data":1}'
    for seq in range(1, KEEP_EVENTS + 11):
        t.add(frames.event_frame(seq, b"%d" % seq, delta))
    assert len(t.kept) == t.held == KEEP_EVENTS and min(t.kept) == 11
    # Runs of text deltas, kept whole under each of their seqs, are bounded the same way.
    t = Translation(Mapper("t", "g"))
    viewer, seq = Viewer(t, t), 2
    opening = [{"type": "start"}, {"type": "text-start", "id": "a"}]
    viewer.direct(
        b"".join(sse.encode(LogEvent(n, *dump_event(c))) for n, c in enumerate(opening, 1))
    )
    while seq < KEEP_EVENTS + 50:
        text = [{"type": "text-delta", "id": "a", "delta": f"w{n}"} for n in range(seq, seq + 7)]
        chunk = b"".join(
            sse.encode(LogEvent(n, *dump_event(c))) for n, c in enumerate(text, seq + 1)
        )
        assert viewer.direct(chunk) == chunk.replace(
            b'\nevent: text-delta\ndata: {"type":"text-delta","id":"a",',
            b'\ndata: {"type":"TEXT_MESSAGE_CONTENT","messageId":"g.2",',
        )
        seq += 7
    assert KEEP_EVENTS - 7 < t.held <= KEEP_EVENTS and len(t.kept) == len(t.order)
    assert t.find(seq - t.held) is None and t.find(seq - t.held + 1) is not None
    assert t.find(seq) is t.kept[seq - 6], "not kept as one run"
    assert t.find(seq).at(seq - 1) == (
        b'id: %d\ndata: {"type":"TEXT_MESSAGE_CONTENT","messageId":"g.2","delta":"w%d"}\n\n'
        % (seq - 1, seq - 2)
    )


def test_a_run_input_becomes_a_chat_request() -> None:
    run = parse_input(
        {
            "threadId": "chat-1",
            "runId": "r1",
            "protocolVersion": "1.0.0",
            "tools": [],
            "context": [],
            "state": {},
            "forwardedProps": {"x": 1},
            "messages": [
                {"id": "s", "role": "developer", "content": "Be brief."},
                {"id": "u1", "role": "user", "content": "Weather?"},
                {
                    "id": "a1",
                    "role": "assistant",
                    "content": "Let me look.",
                    "toolCalls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                {"id": "t1", "role": "tool", "toolCallId": "c1", "content": '{"temp":21}'},
                {"id": "u2", "role": "user", "content": [{"type": "text", "text": "And now?"}]},
            ],
        }
    )
    body = chat_body(run, "openai")
    assert body["id"] == "chat-1" and body["provider"] == "openai"
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    call = body["messages"][2]["parts"][1]
    assert call == {
        "type": "tool-weather",
        "toolCallId": "c1",
        "input": {"city": "Paris"},
        "state": "output-available",
        "output": {"temp": 21},
        "callProviderMetadata": {"agui": {"messageId": "a1", "resultId": "t1"}},
    }
    assert "provider" not in chat_body(run, "default")
    resumed = parse_input(
        {
            "threadId": "chat-1",
            "runId": "r2",
            "messages": [],
            "resume": [
                {"interruptId": "ap1", "status": "resolved"},
                {"interruptId": "ap2", "status": "resolved", "payload": {"approved": False}},
                {"interruptId": "ap3", "status": "cancelled", "payload": {"reason": "no"}},
            ],
        }
    )
    assert decisions(resumed) == [("ap1", True, None), ("ap2", False, None), ("ap3", False, "no")]


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"runId": "r"},
        {"threadId": "bad id!", "runId": "r", "messages": []},
        {"threadId": "c", "runId": "r", "messages": [{"role": "user"}]},
        {"threadId": "c", "runId": "r", "resume": [{"interruptId": "a", "status": "maybe"}]},
    ],
)
def test_a_bad_run_input_is_refused_naming_the_field(body: Any) -> None:
    with pytest.raises(RequestInvalid) as caught:
        parse_input(body)
    assert "RunAgentInput" in caught.value.message


@pytest.mark.parametrize(
    "delta",
    ["plain", "Hé wörld 🙂", 'say "hi"', "back\\slash", "tab\tnew\nline", "\u2028", "", "\\"],
)
def test_a_text_delta_read_without_parsing_is_what_the_mapping_makes(delta: str) -> None:
    """The shared translation's shortcut for plain text deltas (their JSON not parsed)
    makes the same bytes as the mapping and ``frames.encode``."""
    opening = [{"type": "start"}, {"type": "start-step"}, {"type": "text-start", "id": "t0"}]
    fast, slow = Translation(Mapper("c", "g")), Mapper("c", "g")
    for seq, chunk in enumerate(opening, 1):
        fast.add(frames.event_frame(seq, b"%d" % seq, dump_event(chunk)[1]))
        slow.feed(seq, chunk)
    chunk = {"type": "text-delta", "id": "t0", "delta": delta}
    data = dump_event(chunk)[1]
    assert frames.event_frame(4, b"4", data)[3] == b"t0"  # the shortcut is taken
    made = slow.feed(4, chunk)
    assert fast.add(frames.event_frame(4, b"4.0badc0de", data)).frames == (
        frames.encode(made, b"4.0badc0de") if made else b""
    )
    extra = dump_event({**chunk, "providerMetadata": {"x": 1}})[1]
    assert frames.event_frame(4, b"4", extra)[3] == b""  # anything more: the JSON is parsed


def test_a_viewer_on_a_private_translation_rejoins_the_shared_one() -> None:
    delta = b'{"type":"text-delta","id":"t0","delta":"x"}'
    shared, own = Translation(Mapper("t", "g")), Translation(Mapper("t", "g"))
    for seq in range(1, 11):
        shared.add(frames.event_frame(seq, b"%d" % seq, delta))
    own.add(frames.event_frame(1, b"1", delta))
    viewer = Viewer(shared, own)
    assert viewer.lookup(1) is shared.kept[1] and viewer.translation is shared
    assert viewer.lookup(11) is None and viewer.translation is shared
    viewer.translation = own
    assert viewer.direct(b"id: 2\nevent: text-delta\ndata: " + delta + b"\n\n") is not None
    assert viewer.translation is shared  # seq 2 was the shared one's: back on it


def test_run_finished_carries_the_usage_in_ag_ui_s_own_shape() -> None:
    usage = {
        "inputTokens": 120,
        "inputTokenDetails": {"noCacheTokens": 10, "cacheReadTokens": 100, "cacheWriteTokens": 10},
        "outputTokens": 30,
        "outputTokenDetails": {"textTokens": 22, "reasoningTokens": 8},
        "totalTokens": 150,
    }
    finish = {"type": "finish", "messageMetadata": {"model": "claude-x", "usage": usage}}
    events = [e for chunk in mapped([*GENERATION[:-1], finish]) for e in chunk]
    verify(events)
    assert events[-1]["usage"] == [
        {
            "inputTokens": 120,
            "outputTokens": 30,
            "totalTokens": 150,
            "reasoningTokens": 8,
            "cachedInputTokens": 100,
            "cacheWriteInputTokens": 10,
            "model": "claude-x",
        }
    ]
    parsed = agui_events().validate_python(events[-1])
    assert parsed.usage[0].cached_input_tokens == 100
    assert "usage" not in mapped(GENERATION)[-1][-1]  # a finish that reports none
