"""Tools that run in the worker, end to end on real processes: a Redis server, a front-end
and a worker (``WORKER_PROVIDERS=anthropic,openai``, the real SDKs) against the local fake
Anthropic and OpenAI servers, with the tools of ``tests/support/worker_tools.py`` registered
(``WORKER_TOOLS``). Every tool run is recorded in a file, so the tests count them.

The module runs its own Redis and fake server; scripts are queued in the order the model
calls will come (the tests run one at a time and each consumes the scripts it queued).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from broadcaster.core.events import Usage
from tests.support import fake_openai as oai
from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    message,
    text,
    text_reply,
    thinking,
    tool_use,
)
from tests.support.procs import ROOT, SSEEvent, read_sse
from tests.support.stacks import (
    Stack,
    anthropic_env,
    assert_well_formed,
    create,
    start_stack,
    status,
)
from tests.support.worker_tools import runs

pytestmark = pytest.mark.anyio

MODEL = "claude-test-model"
WORKER_TOOL_NAMES = [
    "add",
    "fail",
    "slow",
    "big",
    "gate",
    "gate_once",
    "approved_add",
    "transfer",
    "gated_approval",
]
CLIENT_TOOL = {
    "name": "get_weather",
    "description": "The client runs this one.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def srv() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(api_key="test") as server:
        yield server
    assert server.errors == []


@pytest.fixture(scope="module")
def oai_srv() -> Iterator[oai.FakeOpenAIServer]:
    with oai.FakeOpenAIServer(api_key="test") as server:
        yield server
    assert server.errors == []


@pytest.fixture(scope="module")
def runs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tool-runs") / "runs.jsonl"


@pytest.fixture(scope="module")
def stack(
    srv: FakeAnthropicServer,
    oai_srv: oai.FakeOpenAIServer,
    tmp_path_factory: pytest.TempPathFactory,
    runs_file: Path,
) -> Iterator[Stack]:
    env = anthropic_env(
        srv.base_url,
        WORKER_PROVIDERS="anthropic,openai",
        OPENAI_BASE_URL=oai_srv.base_url,
        OPENAI_API_KEY="test",
        WORKER_TOOLS="tests.support.worker_tools:TOOLS",
        WORKER_TOOL_TIMEOUT_SECONDS="0.5",
        WORKER_TOOL_MAX_OUTPUT_BYTES="1000",
        WORKER_MAX_STEPS="3",
        TOOL_RUNS_FILE=str(runs_file),
        PYTHONPATH=str(ROOT),
        # The steps' requests are compared whole: without the prompt cache's breakpoints
        # (tests/integration/test_prompt_caching.py has them).
        WORKER_PROMPT_CACHING="false",
    )
    s = start_stack(tmp_path_factory.mktemp("worker-tools"), "tools", env)
    try:
        assert "tools: add, fail, slow, big, gate" in s.worker.log()
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def _worker_log_is_clean(stack: Stack) -> Iterator[None]:
    yield
    assert stack.worker.alive(), stack.worker.log()
    assert "Traceback" not in stack.worker.log()
    assert "no event to carry steps_done" not in stack.worker.log()


async def run(stack: Stack, **body: Any) -> tuple[str, list[SSEEvent]]:
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await create(client, stack.url, model=MODEL, max_tokens=300, **body)
        result = await read_sse(client, f"{stack.url}/v1/streams/{gid}/events")
    return gid, assert_well_formed(result)


def of_type(typed: list[SSEEvent], kind: str) -> list[dict[str, Any]]:
    return [e.json() for e in typed if e.event == kind]


def step_bodies(srv: FakeAnthropicServer, first: int) -> list[dict[str, Any]]:
    return [body for _, body in srv.requests[first:]]


async def test_a_registered_tool_runs_once_and_the_generation_goes_on(
    srv: FakeAnthropicServer, stack: Stack, runs_file: Path
) -> None:
    srv.enqueue(
        message(
            [
                thinking(["I should ", "add."]),
                text("Let me add."),
                tool_use("toolu_add1", "add", ['{"a": 2,', ' "b": 3}']),
            ],
            stop_reason="tool_use",
            input_tokens=10,
            output_tokens=5,
        )
    )
    srv.enqueue(text_reply(["The sum ", "is 5."], input_tokens=20, output_tokens=4))
    first, before = srv.request_count, runs(runs_file, "add")
    gid, typed = await run(stack, prompt="add 2 and 3")
    assert [e.event for e in typed] == [
        "start",
        "start-step",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-delta",
        "reasoning-delta",
        "reasoning-end",
        "text-start",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-delta",
        "tool-input-available",
        "tool-output-available",
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    assert typed[0].json() == {"type": "start", "messageId": gid}
    assert of_type(typed, "tool-output-available") == [
        {"type": "tool-output-available", "toolCallId": "toolu_add1", "output": {"sum": 5}}
    ]
    assert typed[-1].json() == {
        "type": "finish",
        "finishReason": "stop",
        "messageMetadata": {"model": MODEL, "usage": Usage(30, 9).ai_sdk()},
    }
    assert runs(runs_file, "add") == before + 1

    # The model was offered the worker's tools, then sent the turn (its thinking signed, as
    # the fake server checks) and the tool's result.
    one, two = step_bodies(srv, first)
    assert [t["name"] for t in one["tools"]] == WORKER_TOOL_NAMES
    assert "_worker_tools" not in one
    assert two["messages"] == [
        {"role": "user", "content": "add 2 and 3"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "I should add.", "signature": "sig_fake"},
                {"type": "text", "text": "Let me add."},
                {"type": "tool_use", "id": "toolu_add1", "name": "add", "input": {"a": 2, "b": 3}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_add1", "content": '{"sum": 5}'}
            ],
        },
    ]
    async with httpx.AsyncClient(timeout=30) as client:
        st = await status(client, stack.url, gid)
    assert st["status"] == "completed"
    assert st["usage"] == Usage(30, 9).snake()
    assert st["text"] == "Let me add.The sum is 5."


async def test_a_tool_error_a_timeout_and_an_oversize_output_reach_the_model_as_errors(
    srv: FakeAnthropicServer, stack: Stack, runs_file: Path
) -> None:
    srv.enqueue(
        message(
            [
                tool_use("toolu_f", "fail", ["{}"]),
                tool_use("toolu_s", "slow", ["{}"]),
                tool_use("toolu_b", "big", ['{"n": 5000}']),
            ],
            stop_reason="tool_use",
        )
    )
    srv.enqueue(text_reply(["Three tools failed."]))
    first = srv.request_count
    _, typed = await run(stack, prompt="try them all")
    assert of_type(typed, "tool-output-error") == [
        {
            "type": "tool-output-error",
            "toolCallId": "toolu_f",
            "errorText": "tool fail failed: RuntimeError: the tool broke",
        },
        {
            "type": "tool-output-error",
            "toolCallId": "toolu_s",
            "errorText": "tool slow timed out after 0.5 s",
        },
        {
            "type": "tool-output-error",
            "toolCallId": "toolu_b",
            "errorText": "tool big: its output is 5012 bytes, over the limit of 1000",
        },
    ]
    assert of_type(typed, "tool-output-available") == []
    assert typed[-1].json()["finishReason"] == "stop"
    _, two = step_bodies(srv, first)
    assert two["messages"][-1] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": i, "content": e["errorText"], "is_error": True}
            for i, e in zip(
                ["toolu_f", "toolu_s", "toolu_b"], of_type(typed, "tool-output-error"), strict=True
            )
        ],
    }
    assert runs(runs_file, "slow", "start") >= 1


async def test_a_client_tool_ends_the_turn_after_the_workers_tools_ran(
    srv: FakeAnthropicServer, stack: Stack, runs_file: Path
) -> None:
    srv.enqueue(
        message(
            [
                tool_use("toolu_w", "get_weather", ['{"city": "Oslo"}']),
                tool_use("toolu_a", "add", ['{"a": 1, "b": 1}']),
            ],
            stop_reason="tool_use",
        )
    )
    first, before = srv.request_count, runs(runs_file, "add")
    _, typed = await run(stack, prompt="weather and a sum", tools=[CLIENT_TOOL])
    assert srv.request_count == first + 1  # no second step: the client owes a result
    assert [e["toolCallId"] for e in of_type(typed, "tool-input-available")] == [
        "toolu_w",
        "toolu_a",
    ]
    assert of_type(typed, "tool-output-available") == [
        {"type": "tool-output-available", "toolCallId": "toolu_a", "output": {"sum": 2}}
    ]
    assert [e.event for e in typed][-2:] == ["finish-step", "finish"]
    assert typed[-1].json()["finishReason"] == "tool-calls"
    assert runs(runs_file, "add") == before + 1
    (one,) = step_bodies(srv, first)
    assert [t["name"] for t in one["tools"]] == ["get_weather", *WORKER_TOOL_NAMES]


async def test_max_steps_ends_the_generation_with_tool_calls(
    srv: FakeAnthropicServer, stack: Stack, runs_file: Path
) -> None:
    for i in range(2):
        srv.enqueue(
            message(
                [tool_use(f"toolu_m{i}", "add", [f'{{"a": {i}, "b": 1}}'])], stop_reason="tool_use"
            )
        )
    first, before = srv.request_count, runs(runs_file, "add")
    _, typed = await run(stack, prompt="keep adding", max_steps=2)
    assert srv.request_count == first + 2
    assert runs(runs_file, "add") == before + 2
    types = [e.event for e in typed]
    assert types.count("start-step") == types.count("finish-step") == 2
    assert types.count("start") == types.count("finish") == 1
    assert [e["output"] for e in of_type(typed, "tool-output-available")] == [
        {"sum": 1},
        {"sum": 2},
    ]
    assert typed[-1].json()["finishReason"] == "tool-calls"


async def test_the_workers_cap_on_steps_holds_whatever_the_request_asks(
    srv: FakeAnthropicServer, stack: Stack
) -> None:
    for i in range(3):
        srv.enqueue(message([tool_use(f"toolu_c{i}", "add", ["{}"])], stop_reason="tool_use"))
    first = srv.request_count
    _, typed = await run(stack, prompt="forever", max_steps=50)  # WORKER_MAX_STEPS=3
    assert srv.request_count == first + 3
    assert [e.event for e in typed].count("start-step") == 3


async def test_a_request_tool_named_like_a_worker_tool_is_a_clear_error(
    srv: FakeAnthropicServer, stack: Stack
) -> None:
    first = srv.request_count
    clash = {**CLIENT_TOOL, "name": "add"}
    _, typed = await run(stack, prompt="x", tools=[clash])
    assert [e.event for e in typed] == ["error"]
    assert "'add' has the name of a tool the worker runs" in typed[0].json()["errorText"]
    assert srv.request_count == first  # the model was never called


async def test_max_steps_is_checked_by_the_front_end(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        for bad in (0, 101, "3", 2.0, True):
            r = await client.post(
                stack.url + "/v1/generations", json={"prompt": "x", "max_steps": bad}
            )
            assert r.status_code == 422, (bad, r.text)
            assert "max_steps" in r.text


async def test_a_registered_tool_runs_on_the_openai_provider_too(
    oai_srv: oai.FakeOpenAIServer, stack: Stack, runs_file: Path
) -> None:
    call = oai.streamed_call("call_add", "add", ['{"a": 4', ', "b": 5}'])
    oai_srv.enqueue(oai.reply(text=["Adding."], tools=[call], prompt_tokens=7))
    oai_srv.enqueue(oai.reply(text=["It is 9."], prompt_tokens=11))
    first, before = oai_srv.request_count, runs(runs_file, "add")
    _, typed = await run(stack, prompt="add 4 and 5", provider="openai")
    assert of_type(typed, "tool-output-available") == [
        {"type": "tool-output-available", "toolCallId": "call_add", "output": {"sum": 9}}
    ]
    assert typed[-1].json()["finishReason"] == "stop"
    assert typed[-1].json()["messageMetadata"]["usage"]["inputTokens"] == 18
    assert runs(runs_file, "add") == before + 1
    one, two = (body for _, body in oai_srv.requests[first:])
    assert [t["function"]["name"] for t in one["tools"]] == WORKER_TOOL_NAMES
    assert two["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_add",
        "content": '{"sum": 9}',
    }
