"""The pure parts of the Responses API provider: the request as ``responses.create``
parameters (``openai_responses_request``), the stream's events as neutral events
(``openai_responses_stream``, then the shared mapping), and the translator's state, from
which a worker that takes a generation over goes on exactly where the lost one was."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support import fake_openai_responses as fr
from tests.support.fake_anthropic import Frame
from worker.mapping import EventMapper
from worker.metrics import CallTiming
from worker.model_call import Policy, _Call
from worker.providers.base import RESUME_FIELD
from worker.providers.openai_request import Untranslatable
from worker.providers.openai_responses_request import responses_params
from worker.providers.openai_responses_stream import ResponseFailed, ResponsesTranslator
from worker.providers.parts import ResumePoint
from worker.takeover import Continue, Plan, Reattach, RunTools, plan_attempt
from worker.usage import Usage
from worker.writer import StreamWriter

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
TOOL = {"name": "add", "input_schema": {"type": "object"}, "description": "Adds."}


def wire(script: list[Any]) -> list[dict[str, Any]]:
    """The events of a fake script as the API streams them (ids, sequence numbers)."""
    stored = fr.StoredResponse("resp_1", "gpt-x", [])
    frames = [s for s in script if isinstance(s, Frame)]
    return [{**stored.filled(f.data), "sequence_number": n} for n, f in enumerate(frames, 1)]


def mapped(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    translator, mapper = ResponsesTranslator(), EventMapper("m")
    return [e for ev in events for one in translator.feed(ev) for e in mapper.feed(one)]


SCRIPT = fr.reply(
    reasoning=["Think", "ing."],
    text=["Hel", "lo"],
    calls=[fr.call("call_1", "add", ['{"a": 1', ', "b": 2}']), fr.call("call_2", "add", ["{}"])],
    input_tokens=7,
    output_tokens=5,
    cached_tokens=4,
)
USED = Usage(input=7, output=5, cache_read=4, reasoning=2)
"""As the script's usage says: all input 7, 4 of it read from the cache; reasoning 2."""


def test_the_request_as_responses_parameters() -> None:
    request = {
        "model": "gpt-5",
        "max_tokens": 4096,
        "system": "Be brief.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Add, and look:"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": ""},
                    {"type": "text", "text": "Adding."},
                    {"type": "tool_use", "id": "call_1", "name": "add", "input": {"a": 1}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "1"}],
            },
        ],
        "tools": [TOOL],
        "tool_choice": {"type": "tool", "name": "add"},
        "thinking": {"type": "enabled", "budget_tokens": 8000},
        "temperature": 0.5,
    }
    assert responses_params(request) == {
        "model": "gpt-5",
        "stream": True,
        "background": True,
        "store": True,
        "max_output_tokens": 4096,
        "instructions": "Be brief.",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Add, and look:"},
                    {
                        "type": "input_image",
                        "image_url": f"data:image/png;base64,{PNG}",
                        "detail": "auto",
                    },
                ],
            },
            {"role": "assistant", "content": "Adding."},
            {"type": "function_call", "call_id": "call_1", "name": "add", "arguments": '{"a": 1}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "1"},
        ],
        "tools": [
            {
                "type": "function",
                "name": "add",
                "parameters": {"type": "object"},
                "description": "Adds.",
            }
        ],
        "tool_choice": {"type": "function", "name": "add"},
        "reasoning": {"effort": "medium", "summary": "auto"},
        "temperature": 0.5,
    }


def test_stop_sequences_have_no_equivalent() -> None:
    request = {"model": "m", "max_tokens": 10, "prompt": "hi", "stop_sequences": ["END"]}
    with pytest.raises(Untranslatable, match="stop_sequences"):
        responses_params(request)


def test_a_stream_maps_as_the_other_providers() -> None:
    events = mapped(wire(SCRIPT))
    assert events == [
        {"type": "start", "messageId": "m"},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "r0"},
        {"type": "reasoning-delta", "id": "r0", "delta": "Think"},
        {"type": "reasoning-delta", "id": "r0", "delta": "ing."},
        {"type": "reasoning-end", "id": "r0"},
        {"type": "text-start", "id": "t1"},
        {"type": "text-delta", "id": "t1", "delta": "Hel"},
        {"type": "text-delta", "id": "t1", "delta": "lo"},
        {"type": "text-end", "id": "t1"},
        {"type": "tool-input-start", "toolCallId": "call_1", "toolName": "add"},
        {"type": "tool-input-delta", "toolCallId": "call_1", "inputTextDelta": '{"a": 1'},
        {"type": "tool-input-delta", "toolCallId": "call_1", "inputTextDelta": ', "b": 2}'},
        {
            "type": "tool-input-available",
            "toolCallId": "call_1",
            "toolName": "add",
            "input": {"a": 1, "b": 2},
        },
        {"type": "tool-input-start", "toolCallId": "call_2", "toolName": "add"},
        {"type": "tool-input-delta", "toolCallId": "call_2", "inputTextDelta": "{}"},
        {"type": "tool-input-available", "toolCallId": "call_2", "toolName": "add", "input": {}},
        {"type": "finish-step"},
        {
            "type": "finish",
            "finishReason": "tool-calls",
            "messageMetadata": {"model": "gpt-x", "usage": USED.ai_sdk()},
        },
    ]


def test_a_successor_goes_on_from_any_event_as_if_it_had_read_them_all() -> None:
    """Cut after each event: a translator built from the snapshot, and a mapper brought up
    to date by ``reopen`` (its output already shown), give exactly the rest."""
    events = wire(SCRIPT)
    whole = mapped(events)
    for cut in range(1, len(events)):
        translator, mapper = ResponsesTranslator(), EventMapper("m")
        shown = [e for ev in events[:cut] for r in translator.feed(ev) for e in mapper.feed(r)]
        inputs: dict[str, str] = {}
        for e in shown:
            if e["type"] == "tool-input-delta":
                inputs[e["toolCallId"]] = inputs.get(e["toolCallId"], "") + e["inputTextDelta"]
        successor = ResponsesTranslator.resumed(translator.snapshot())
        fresh = EventMapper("m")
        for one in successor.reopen(inputs):
            fresh.feed(one)
        rest = [e for ev in events[cut:] for r in successor.feed(ev) for e in fresh.feed(r)]
        assert shown + rest == whole, f"cut after event {cut}"
        assert successor.response_id == "resp_1" and fresh.usage == USED


def test_arguments_sent_only_whole_are_the_call_input() -> None:
    events = wire(fr.reply(calls=[fr.call("call_9", "add", ['{"a": 5}'])]))
    events = [e for e in events if e["type"] != "response.function_call_arguments.delta"]
    out = mapped(events)
    available = [e for e in out if e["type"] == "tool-input-available"]
    assert available == [
        {
            "type": "tool-input-available",
            "toolCallId": "call_9",
            "toolName": "add",
            "input": {"a": 5},
        }
    ]


@pytest.mark.parametrize(
    ("reason", "finish"), [("max_output_tokens", "length"), ("content_filter", "content-filter")]
)
def test_an_incomplete_response_finishes_with_its_reason(reason: str, finish: str) -> None:
    events = wire(fr.reply(text=["cut"]))
    last = events[-1]
    last["type"] = "response.incomplete"
    last["response"] = {
        **last["response"],
        "status": "incomplete",
        "incomplete_details": {"reason": reason},
    }
    assert mapped(events)[-1]["finishReason"] == finish


def test_a_refusal_is_text_and_content_filter() -> None:
    events = wire(fr.reply(text=["I can't."]))
    for e in events:
        if e["type"] == "response.output_text.delta":
            e["type"] = "response.refusal.delta"
    out = mapped(events)
    assert next(e for e in out if e["type"] == "text-delta")["delta"] == "I can't."
    assert out[-1]["finishReason"] == "content-filter"


@pytest.mark.parametrize("fault", [fr.failed("no capacity"), fr.stream_error("no capacity")])
def test_a_failure_raises_with_its_message(fault: Frame) -> None:
    events = wire([*fr.reply(text=["a"])[:5], fault])
    with pytest.raises(ResponseFailed, match="server_error: no capacity"):
        mapped(events)


def test_a_noted_point_names_exactly_the_output_pending_whenever_a_flush_may_come() -> None:
    """The model call's side: whenever it would let the merge window flush, what is
    pending is exactly the output of the events up to the point it noted, no more, no less
    (the output of a part's end is held back, and a Responses event can be several
    neutral events)."""
    from worker.providers.openai_responses import resume_point

    events = wire(SCRIPT)
    translator = ResponsesTranslator()
    writer = StreamWriter(SimpleNamespace(log=None), "g", "owner", 0)  # type: ignore[arg-type]
    call = _Call(writer, Policy(), EventMapper("m"), False, CallTiming(None, "openai"))
    checked = set()
    for event in events:
        found = translator.feed(event)
        if found:
            found.append(ResumePoint(resume_point(translator, event["sequence_number"])))
        for one in found:
            call.take(one)
            if call.resumable and writer.noted_meta:
                after = json.loads(writer.noted_meta[RESUME_FIELD])["after"]
                ended = ("finish-step", "finish")
                expected = [e for e in mapped(events[:after]) if e["type"] not in ended]
                assert writer.pending == expected, f"after event {after}"
                checked.add(after)
    deltas = {e["sequence_number"] for e in events if e["type"].endswith(".delta")}
    assert deltas <= checked  # a successor can go on after any delta


class _Keeps:
    """A provider whose calls outlive their worker, and whose answer to ``reattachable``
    the test sets."""

    def __init__(self, alive: bool) -> None:
        self.alive = alive
        self.asked: list[dict[str, Any]] = []

    async def reattachable(self, point: dict[str, Any]) -> bool:
        self.asked.append(point)
        return self.alive


CUT = [
    {"type": "start", "messageId": "m"},
    {"type": "start-step"},
    {"type": "text-start", "id": "t0"},
    {"type": "text-delta", "id": "t0", "delta": "Hel"},
]


async def planned(provider: Any, events: Sequence[dict[str, Any]], meta: dict[str, str]) -> Plan:
    """The plan of attempt 3, taking over from a lost worker."""
    return await plan_attempt(events, meta, provider, attempt=3, lost_worker=True, mode="continue")


@pytest.mark.anyio
@pytest.mark.parametrize("alive", [True, False])
async def test_a_takeover_goes_on_with_a_call_that_is_still_there(alive: bool) -> None:
    """A retry before (``data-retry``, attempt 2): the second attempt's part ids were
    ``a2-``; the one that takes it over keeps them, and goes on in the cut step."""
    events: list[dict[str, Any]] = [
        {"type": "data-retry", "data": {"attempt": 2, "reason": "lost"}},
        *CUT[:2],
        {"type": "text-start", "id": "a2-t0"},
        {"type": "text-delta", "id": "a2-t0", "delta": "Hel"},
        {"type": "tool-input-start", "toolCallId": "call_1", "toolName": "add"},
        {"type": "tool-input-delta", "toolCallId": "call_1", "inputTextDelta": '{"a"'},
        {"type": "tool-input-delta", "toolCallId": "call_1", "inputTextDelta": ": 1"},
    ]
    point = {"id": "resp_1", "after": 9, "state": {}}
    meta = {RESUME_FIELD: json.dumps(point)}
    provider = _Keeps(alive)
    plan = await planned(provider, events, meta)
    assert provider.asked == [point]
    if not alive:
        assert isinstance(plan.first, Continue) and plan.notice is not None
        return
    assert isinstance(plan.first, Reattach) and plan.notice is None
    progress = plan.progress
    assert (progress.id_prefix, progress.started, progress.stream_steps) == ("a2-", True, 1)
    assert plan.first.shown == events[3:]
    request = plan.first.request({"model": "m"})
    assert request["reattach"] == {"point": point, "tool_inputs": {"call_1": '{"a": 1'}}


@pytest.mark.anyio
async def test_no_point_or_a_whole_step_goes_the_usual_way() -> None:
    provider = _Keeps(True)
    assert isinstance((await planned(provider, CUT, {})).first, Continue)
    whole = [*CUT, {"type": "text-end", "id": "t0"}]
    meta = {RESUME_FIELD: json.dumps({"id": "resp_1", "after": 3, "state": {}}), "steps_done": "1"}
    assert (await planned(provider, whole, meta)).first == RunTools(lost_run=True)
    assert provider.asked == []
