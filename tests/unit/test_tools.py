"""Tools that run in the worker, pure parts: the registry (``WORKER_TOOLS`` checked at
start-up), one tool call (output, exception, timeout, size limit), the steps folded from
a stream's events, where a takeover resumes, and the fake provider's tool calls."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from examples.tools import TOOLS as EXAMPLE_TOOLS
from tests.support.procs import ROOT
from tests.support.worker_tools import TOOLS
from worker.providers.fake import fake_events, fake_tool_call
from worker.tools import ToolBox, ToolClash, ToolSpecError, load_tools
from worker.transcript import Step, plan_resume, split_steps, step_messages, tool_result

pytestmark = pytest.mark.anyio

SPEC = "tests.support.worker_tools"


# ---- the registry


def test_a_spec_names_lists_of_tools_in_order() -> None:
    tools = load_tools(f"{SPEC}:TOOLS, examples.tools:TOOLS")
    assert [t.name for t in tools] == [t.name for t in [*TOOLS, *EXAMPLE_TOOLS]]
    assert load_tools(None) == () == load_tools(" ")
    assert tools[0].definition() == {
        "name": "add",
        "description": "Add two integers.",
        "input_schema": TOOLS[0].input_schema,
    }


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("tests.support.worker_tools", "not of the form package.module:attribute"),
        ("no.such.module:TOOLS", "cannot import 'no.such.module'"),
        (f"{SPEC}:MISSING", "has no attribute 'MISSING'"),
        (f"{SPEC}:BAD_NOT_A_LIST", "is not a list of tools"),
        (f"{SPEC}:BAD_SYNC", "run must be an async function"),
        (f"{SPEC}:BAD_NAME", "tool name 'has space' must match"),
        (f"{SPEC}:BAD_SCHEMA", '"type": "object"'),
        (f"{SPEC}:BAD_DUPLICATE", "'add' is registered twice"),
        (f"{SPEC}:BAD_ITEM", "is not a worker.tools.Tool"),
        (f"{SPEC}:TOOLS,{SPEC}:TOOLS", "'add' is registered twice"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_problem(spec: str, says: str) -> None:
    with pytest.raises(ToolSpecError, match="WORKER_TOOLS") as caught:
        load_tools(spec)
    assert says in str(caught.value)


def test_the_worker_refuses_to_start_with_a_bad_spec() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "worker", "run"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "WORKER_TOOLS": f"{SPEC}:BAD_SYNC"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "worker: bad settings: WORKER_TOOLS" in run.stderr
    assert "run must be an async function" in run.stderr


# ---- one call


def box(**kw: Any) -> ToolBox:
    return ToolBox.of(TOOLS, kw.get("timeout_s", 5.0), kw.get("max_output_bytes", 1000))


async def test_a_call_answers_with_its_output() -> None:
    out = await box().call("c1", "add", {"a": 2, "b": 3})
    assert out == {"type": "tool-output-available", "toolCallId": "c1", "output": {"sum": 5}}


@pytest.mark.parametrize(
    ("name", "tool_input", "says"),
    [
        ("fail", {}, "tool fail failed: RuntimeError: the tool broke"),
        ("slow", {}, "tool slow timed out after 0.2 s"),
        ("big", {"n": 5000}, "tool big: its output is 5012 bytes, over the limit of 1000"),
        ("add", "not json", "tool add: its input is not a JSON object"),
    ],
)
async def test_a_failing_call_answers_with_an_error(name: str, tool_input: Any, says: str) -> None:
    out = await box(timeout_s=0.2).call("c1", name, tool_input)
    assert out == {"type": "tool-output-error", "toolCallId": "c1", "errorText": says}


def test_the_worker_tools_are_offered_after_the_requests_own() -> None:
    own = {"name": "client_tool", "input_schema": {"type": "object"}}
    request = {"prompt": "x", "tools": [own]}
    offered = box().offer(request)
    assert offered["tools"][0] == own
    assert [t["name"] for t in offered["tools"][1:]] == [t.name for t in TOOLS]
    assert offered["_worker_tools"] == [t.name for t in TOOLS]
    assert ToolBox({}).offer(request) is request  # no tools: the request as it was
    with pytest.raises(ToolClash, match="'add' has the name of a tool the worker runs"):
        box().offer({"prompt": "x", "tools": [{**own, "name": "add"}]})


async def test_the_example_tools_are_deterministic() -> None:
    roll, count = EXAMPLE_TOOLS
    first = await roll.run({"sides": 6, "count": 3, "seed": 42})
    assert first == await roll.run({"sides": 6, "count": 3, "seed": 42})
    assert len(first["rolls"]) == 3 and first["total"] == sum(first["rolls"])
    assert await count.run({"text": "one two three"}) == {"words": 3, "characters": 13}
    with pytest.raises(ValueError, match="sides"):
        await roll.run({"sides": 1})


# ---- steps folded from events

CALL = [
    {"type": "reasoning-start", "id": "r0"},
    {"type": "reasoning-delta", "id": "r0", "delta": "hmm"},
    {
        "type": "reasoning-delta",
        "id": "r0",
        "delta": "",
        "providerMetadata": {"anthropic": {"signature": "sig"}},
    },
    {"type": "reasoning-end", "id": "r0"},
    {"type": "text-start", "id": "t1"},
    {"type": "text-delta", "id": "t1", "delta": "Let me add."},
    {"type": "text-end", "id": "t1"},
    {"type": "tool-input-start", "toolCallId": "u1", "toolName": "add"},
    {"type": "tool-input-delta", "toolCallId": "u1", "inputTextDelta": '{"a": 2, "b": 3}'},
    {
        "type": "tool-input-available",
        "toolCallId": "u1",
        "toolName": "add",
        "input": {"a": 2, "b": 3},
    },
    {"type": "tool-input-start", "toolCallId": "u2", "toolName": "fail"},
    {"type": "tool-input-available", "toolCallId": "u2", "toolName": "fail", "input": {}},
]
OUT1 = {"type": "tool-output-available", "toolCallId": "u1", "output": {"sum": 5}}
OUT2 = {"type": "tool-output-error", "toolCallId": "u2", "errorText": "broke"}
STEP1 = [{"type": "start-step"}, *CALL, OUT1, OUT2, {"type": "finish-step"}]
STEP2 = [
    {"type": "start-step"},
    {"type": "text-start", "id": "t0"},
    {"type": "text-delta", "id": "t0", "delta": "It is 5"},
]
START = {"type": "start", "messageId": "m"}


def test_a_step_folds_to_the_assistant_turn_and_the_tool_results() -> None:
    (step,) = split_steps([START, *STEP1])
    assert step.finished
    assert [c.id for c in step.calls()] == ["u1", "u2"]
    assistant, user = step.turns()
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Let me add."},
            {"type": "tool_use", "id": "u1", "name": "add", "input": {"a": 2, "b": 3}},
            {"type": "tool_use", "id": "u2", "name": "fail", "input": {}},
        ],
    }
    assert user == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "u1", "content": json.dumps({"sum": 5})},
            {"type": "tool_result", "tool_use_id": "u2", "content": "broke", "is_error": True},
        ],
    }


def test_the_next_step_is_sent_the_prompt_then_each_steps_turns() -> None:
    request = {"prompt": "add 2 and 3", "max_tokens": 10, "tools": []}
    assert step_messages(request, []) is request
    steps = split_steps([START, *STEP1])
    sent = step_messages(request, steps)
    assert "prompt" not in sent and sent["max_tokens"] == 10
    assert sent["messages"][0] == {"role": "user", "content": "add 2 and 3"}
    assert sent["messages"][1:] == steps[0].turns()
    with_messages = {"messages": [{"role": "user", "content": "hi"}]}
    assert step_messages(with_messages, steps)["messages"][0] == {"role": "user", "content": "hi"}


def test_a_tool_result_for_a_tool_that_never_answered_is_an_error() -> None:
    assert tool_result("u9", None)["is_error"] is True
    step = Step([{"type": "text-start", "id": "t0"}, {"type": "text-end", "id": "t0"}])
    assert step.turns()[0]["content"] == []  # an empty text block is not sent back


# ---- where a takeover resumes


def test_resume_after_a_finished_step_keeps_it_and_shows_nothing_again() -> None:
    plan = plan_resume([START, *STEP1], steps_done=1)
    assert plan.cut is None and plan.started
    assert [s.finished for s in plan.steps] == [True]
    assert plan.stream_steps == 1


def test_resume_in_a_step_whose_model_output_was_whole_keeps_its_tool_outputs() -> None:
    events = [START, {"type": "start-step"}, *CALL, OUT1]  # died while "fail" ran
    plan = plan_resume(events, steps_done=1)
    assert plan.cut is None and plan.started
    (step,) = plan.steps
    assert not step.finished
    assert list(step.outputs()) == ["u1"]  # only u2 runs again


def test_resume_in_the_middle_of_a_model_call_goes_on_in_that_step() -> None:
    events = [START, *STEP1, *STEP2]
    plan = plan_resume(events, steps_done=1)  # step 2's output was not whole
    assert plan.cut is not None and plan.started
    assert plan.cut.events == STEP2[1:]  # the cut step's events, after its start-step
    assert len(plan.steps) == 1 and plan.steps[0].finished
    assert plan.stream_steps == 2


def test_resume_of_a_cut_first_model_call_goes_on_in_it() -> None:
    events = [START, {"type": "start-step"}, *CALL[:5]]
    plan = plan_resume(events, steps_done=0)
    assert plan.cut is not None and plan.started and plan.steps == []


def test_resume_counts_only_the_latest_attempt() -> None:
    retry = {"type": "data-retry", "data": {"attempt": 2}}
    events = [START, *STEP1, *STEP2, retry, START, *STEP1, {"type": "start-step"}, *CALL, OUT1]
    # steps_done counts the start-step events of the whole stream: 4 when the second
    # attempt's step 2 was whole
    plan = plan_resume(events, steps_done=4)
    assert plan.cut is None
    assert [s.finished for s in plan.steps] == [True, False]
    plan = plan_resume(events, steps_done=3)  # ... or not
    assert plan.cut is not None and [s.finished for s in plan.steps] == [True]


# ---- the fake provider


WORKER_TOOL = {"name": "count_words", "input_schema": {"type": "object", "properties": {}}}
CLIENT_TOOL = {
    "name": "get_weather",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "default": "Oslo"}},
    },
}


def test_the_fake_calls_the_tool_the_prompt_names_with_a_deterministic_input() -> None:
    request = {
        "prompt": "please count_words of this",
        "tools": [CLIENT_TOOL, WORKER_TOOL],
        "_worker_tools": ["count_words"],
    }
    call = fake_tool_call(request)
    assert call is not None and call["name"] == "count_words"
    assert call == fake_tool_call(dict(request))
    unnamed = {**request, "prompt": "hello"}
    assert fake_tool_call(unnamed)["name"] == "get_weather"  # type: ignore[index]
    assert fake_tool_call(unnamed)["input"] == {"city": "Oslo"}  # type: ignore[index]
    only_workers = {**unnamed, "tools": [WORKER_TOOL]}
    assert fake_tool_call(only_workers) is None  # the worker's tools: only when named


def test_the_fake_answers_a_tool_result_with_it() -> None:
    result = {"type": "tool_result", "tool_use_id": "u1", "content": '{"words": 3}'}
    request = {
        "max_tokens": 5,
        "tools": [WORKER_TOOL],
        "_worker_tools": ["count_words"],
        "messages": [
            {"role": "user", "content": "count_words please"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "u1", "name": "count_words", "input": {}}],
            },
            {"role": "user", "content": [result]},
        ],
    }
    events = fake_events(request)
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert '{"words": 3}' in text
    assert not any(e.get("content_block", {}).get("type") == "tool_use" for e in events)
