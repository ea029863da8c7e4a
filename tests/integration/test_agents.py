"""Agents served by the worker (``WORKER_AGENTS``, docs/agents.md) behind ``/v1/chat`` and
``/v1/generations``, with ``provider`` the agent's name: a plain async callable
(``echo``), a pydantic-ai ``Agent`` on an offline ``FunctionModel`` (``helper``) and a
LangGraph graph on a fake chat model (``graph``), in tests/support/agents.py.

Real processes: a Redis of the module's own, a front-end and a worker that serves only
the two agents (no model API key), with a short lease so that a takeover comes soon.
The answers are read as the AI SDK reads them (tests/clients/aisdk/read.mjs:
``readUIMessageStream``), and as the project's own stream parsing does.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from broadcaster.core.events import Usage
from tests.support.agent_chats import live as _live
from tests.support.agent_chats import running_text as _running_text
from tests.support.agent_chats import sdk_message as _sdk
from tests.support.agent_chats import send as _chat
from tests.support.agent_chats import stack_marks as _marks
from tests.support.agent_chats import status as _status
from tests.support.agent_chats import stored as _stored
from tests.support.agent_chats import turn_text as _text
from tests.support.agents import GRAPH_USAGE
from tests.support.chat_tabs import Tab, body, events, user
from tests.support.polling import wait_for
from tests.support.procs import ROOT
from tests.support.stacks import Stack, start_stack

AGENTS = (
    "echo=tests.support.agents:echo,helper=tests.support.agents:helper,"
    "graph=tests.support.agents:graph"
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("agents")
    env = {
        "WORKER_AGENTS": AGENTS,
        "WORKER_PROVIDERS": "echo,helper,graph",
        "WORKER_LEASE_SECONDS": "2",
        "ANTHROPIC_API_KEY": "",
        "AGENT_MARKS": str(tmp / "marks.jsonl"),
        "PYTHONPATH": str(ROOT),
    }
    s = start_stack(tmp, "agents", env, metrics=True)
    s.root, s.worker_env = tmp, env
    try:
        served = {"echo", "helper", "graph"}
        wait_for("the agents advertised", lambda: _live(s) >= served, context=s.logs)
        yield s
    finally:
        s.stop()


def test_readyz_lists_the_agents_and_only_served_names_are_accepted(stack: Stack) -> None:
    providers = httpx.get(f"{stack.url}/readyz").json()["providers"]
    assert providers["echo"]["live_workers"] and providers["helper"]["live_workers"]
    made = httpx.post(
        f"{stack.url}/v1/generations", json={"prompt": "hello there", "provider": "echo"}
    )
    assert made.status_code == 202, made.text
    status = httpx.get(f"{stack.url}/v1/generations/{made.json()['id']}").json()
    assert status["provider"] == "echo"
    unknown = httpx.post(f"{stack.url}/v1/generations", json={"prompt": "hi", "provider": "nobody"})
    assert unknown.status_code == 422 and unknown.json()["error"] == "provider_unavailable"
    assert "echo" in unknown.json()["message"] and "helper" in unknown.json()["message"]
    bad = httpx.post(f"{stack.url}/v1/generations", json={"prompt": "hi", "provider": "No Way!"})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_request"
    chat = _chat(stack, "chat-nobody", "hi", "nobody")
    assert chat.status_code == 422 and "echo" in chat.json()["message"]
    wait_for("the answer", lambda: _status(stack, made.json()["id"]) == "completed")


def test_a_callable_agent_answers_a_chat_and_resumes_from_any_event(stack: Stack) -> None:
    posted = _chat(stack, "chat-echo", "say something", "echo", metadata={"words": 5})
    assert posted.status_code == 200, posted.text
    generation = posted.headers["x-generation-id"]
    got = events(posted.content)
    kinds = [e["type"] for e in got]
    assert kinds[0] == "start" and kinds[-1] == "finish", kinds
    text = "".join(e["delta"] for e in got if e["type"] == "text-delta")
    assert text == "one two three four five "
    assert got[-1]["messageMetadata"]["model"] == "echo"
    message = _sdk(stack, generation)
    assert message["text"] == text and message["done"] is True
    stored = httpx.get(f"{stack.url}/v1/streams/{generation}/events", timeout=30)
    ids = [line[4:] for line in stored.text.splitlines() if line.startswith("id: ")]
    # From the step's start on (a stock reader needs each part from its start).
    at = [e["type"] for e in events(stored.content)].index("start-step")
    resumed = _sdk(stack, generation, "--last-event-id", ids[at])
    assert resumed["chunk_types"][0] == "text-start" and resumed["text"] == text
    assert len(resumed["chunk_types"]) == len(ids) - at - 1
    listed = httpx.get(f"{stack.api}/chat-echo/messages").json()["messages"]
    assert listed[-1]["role"] == "assistant" and listed[-1]["parts"][-1]["text"] == text


def test_a_callable_agents_own_tool_and_steering_reach_it(stack: Stack) -> None:
    chat = "chat-echo-steps"
    extra = {"metadata": {"words": 20, "delay": 0.05, "steps": 2}}
    first = Tab(stack, body(chat, user("use a tool", "s-u1"), provider="echo", **extra))
    wait_for("the first words", lambda: _running_text(stack, chat), context=stack.logs)
    steered = httpx.post(
        stack.api, json=body(chat, user("and be brief", "s-u2"), provider="echo", multitask="steer")
    )
    assert steered.status_code == 200, steered.text
    got = events(first.result().content)
    kinds = [e["type"] for e in got]
    assert kinds.count("start-step") == 2 and kinds[-1] == "finish", kinds
    outputs = [e for e in got if e["type"] == "tool-output-available"]
    assert outputs[0]["output"] == {"found": len("use a tool")}
    calls = [e for e in got if e["type"] == "tool-input-available"]
    assert all(c["providerExecuted"] is True for c in calls)
    k = kinds.index("data-steer")
    assert kinds[k - 1] == "finish-step" and kinds[k + 1] == "start-step"
    second = "".join(e["delta"] for e in got[k:] if e["type"] == "text-delta")
    assert "[steered: and be brief]" in second
    message = _sdk(stack, first.result().headers["x-generation-id"])
    tools = [t for t in message["tools"] if t["toolName"] == "lookup"]
    assert tools and all(t["state"] == "output-available" for t in tools)


def test_a_pydantic_ai_agent_streams_and_runs_its_tool(stack: Stack) -> None:
    posted = _chat(stack, "chat-weather", "what is the weather", "helper")
    assert posted.status_code == 200, posted.text
    got = events(posted.content)
    kinds = [e["type"] for e in got]
    assert kinds[-1] == "finish" and kinds.count("start-step") == 2, kinds
    call = next(e for e in got if e["type"] == "tool-input-available")
    assert call["toolName"] == "weather" and call["input"] == {"city": "Paris"}
    output = next(e for e in got if e["type"] == "tool-output-available")
    assert output["output"] == "sunny in Paris"
    text = "".join(e["delta"] for e in got if e["type"] == "text-delta")
    assert text.startswith("one two three") and text.endswith("The tool said: sunny in Paris")
    assert [m["city"] for m in _marks(stack, "weather")] == ["Paris"]
    message = _sdk(stack, posted.headers["x-generation-id"])
    (tool,) = message["tools"]
    assert tool["toolName"] == "weather" and tool["state"] == "output-available"
    # The usage is pydantic-ai's own count of the run, as the same agent counts it here.
    assert got[-1]["messageMetadata"]["usage"] == pydantic_ai_count("what is the weather")


def pydantic_ai_count(prompt: str) -> dict[str, object]:
    """What pydantic-ai counts of ``helper``'s run on ``prompt``, run in this process as
    the worker runs it (node by node, each model request streamed)."""
    from pydantic_ai import Agent, DeferredToolRequests

    from tests.support import agents
    from worker.agents.pydantic_agent import usage_of

    async def run() -> Any:
        kinds = [agents.helper.output_type, DeferredToolRequests]
        async with agents.helper.iter(prompt, output_type=kinds) as running:
            node = running.next_node
            while not Agent.is_end_node(node):
                if Agent.is_model_request_node(node) or Agent.is_call_tools_node(node):
                    async with node.stream(running.ctx) as events:
                        async for _ in events:
                            pass
                node = await running.next(node)
            return running.usage

    counted = asyncio.run(run())
    assert counted.requests == 2 and counted.input_tokens > 0
    return usage_of(counted).ai_sdk()


def test_an_agents_approval_waits_holding_nothing_and_resumes_it(stack: Stack) -> None:
    chat = "chat-delete"
    posted = _chat(stack, chat, "please delete it", "helper")
    generation = posted.headers["x-generation-id"]
    got = events(posted.content)
    kinds = [e["type"] for e in got]
    assert kinds[-3:] == ["tool-input-available", "tool-approval-request", "finish"], kinds
    asked = got[-2]
    assert asked["toolCallId"] == "call-delete"
    assert _status(stack, generation) == "waiting"
    assert _marks(stack, "delete") == []
    decide = {"approvalId": asked["approvalId"], "approved": True}
    decided = httpx.post(f"{stack.api}/{chat}/approvals", json=decide)
    assert decided.status_code == 200 and decided.json()["resumed"], decided.text
    wait_for("the end", lambda: _status(stack, generation) == "completed", context=stack.logs)
    assert [m["path"] for m in _marks(stack, "delete")] == ["/tmp/x"]
    everything = _stored(stack, generation)
    kinds = [e["type"] for e in everything]
    k = kinds.index("data-approval")
    output = next(e for e in everything[k:] if e["type"] == "tool-output-available")
    assert output["toolCallId"] == "call-delete" and output["output"] == "deleted /tmp/x"
    text = "".join(e["delta"] for e in everything[k:] if e["type"] == "text-delta")
    assert text == "The tool said: deleted /tmp/x"
    assert kinds.count("start") == 1 and kinds[-1] == "finish"
    final = httpx.get(f"{stack.api}/{chat}/messages").json()["messages"][-1]
    tool = next(p for p in final["parts"] if p["type"] == "tool-delete")
    assert tool["state"] == "output-available" and tool["approval"]["approved"] is True


def test_a_callable_agent_is_called_again_with_the_decision(stack: Stack) -> None:
    chat = "chat-wipe"
    posted = _chat(stack, chat, "approve the wipe", "echo")
    generation = posted.headers["x-generation-id"]
    asked = events(posted.content)[-2]
    assert asked["type"] == "tool-approval-request" and asked["toolCallId"] == "call-wipe"
    decide = {"approvalId": asked["approvalId"], "approved": False}
    assert httpx.post(f"{stack.api}/{chat}/approvals", json=decide).status_code == 200
    wait_for("the end", lambda: _status(stack, generation) == "completed", context=stack.logs)
    everything = _stored(stack, generation)
    kinds = [e["type"] for e in everything]
    assert "tool-output-denied" in kinds and "tool-output-available" not in kinds
    assert everything[-4]["delta"] == "denied "
    assert [m for m in _marks(stack, "wipe") if m["generation"] == generation] == []


def test_a_langgraph_interrupt_is_an_approval_that_resumes_the_graph(stack: Stack) -> None:
    chat = "chat-graph"
    posted = _chat(stack, chat, "tidy up", "graph")
    assert posted.status_code == 200, posted.text
    generation = posted.headers["x-generation-id"]
    got = events(posted.content)
    text = "".join(e["delta"] for e in got if e["type"] == "text-delta")
    assert text == "I will delete the file if you agree"
    asked = got[-2]
    assert asked["type"] == "tool-approval-request" and asked["toolCallId"].startswith("interrupt-")
    call = next(e for e in got if e["type"] == "tool-input-available")
    assert call["toolName"] == "delete" and call["input"] == {"path": "/tmp/graph"}
    decide = {"approvalId": asked["approvalId"], "approved": True}
    assert httpx.post(f"{stack.api}/{chat}/approvals", json=decide).status_code == 200
    wait_for("the end", lambda: _status(stack, generation) == "completed", context=stack.logs)
    assert len(_marks(stack, "graph delete")) == 1
    assert _text(stack, generation).endswith("Deleted it.")
    message = _sdk(stack, generation)
    assert message["text"].endswith("Deleted it.")
    # LangChain's usage_metadata of the graph's one model call.
    said = GRAPH_USAGE
    counted = Usage(
        said["input_tokens"],
        said["output_tokens"],
        cache_read=said["input_token_details"]["cache_read"],
        cache_write=said["input_token_details"]["cache_creation"],
        reasoning=said["output_token_details"]["reasoning"],
    )
    assert message["metadata"]["usage"] == counted.ai_sdk()


def test_a_stop_closes_the_agents_model_stream(stack: Stack) -> None:
    chat = "chat-stop"
    first = Tab(stack, body(chat, user("a slow answer", "stop-u1"), provider="helper"))
    wait_for("the first words", lambda: _running_text(stack, chat), context=stack.logs)
    stopped = httpx.post(f"{stack.api}/{chat}/stop")
    assert stopped.status_code in (200, 202), stopped.text
    got = events(first.result().content)
    assert got[-1]["type"] == "abort"
    wait_for(
        "the model stream closed",
        lambda: [m for m in _marks(stack, "model stream closed") if m["prompt"] == "a slow answer"],
        context=stack.logs,
    )


def test_the_workers_metrics_name_each_agent(stack: Stack) -> None:
    """The provider label of the worker's metrics is the agent's name (the agents a
    worker serves are a list its operator named: a bounded label)."""
    text = httpx.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=10).text
    counts = {
        sample.labels["provider"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "worker_generation_duration_seconds"
        for sample in family.samples
        if sample.name.endswith("_count")
    }
    assert counts.get("echo", 0) >= 3 and counts.get("helper", 0) >= 3, counts
    assert counts.get("graph", 0) >= 1 and counts.get("other", 0) == 0, counts


def test_a_worker_killed_mid_answer_is_taken_over(stack: Stack) -> None:
    """Last: it kills the module's worker and starts the next one."""
    assert stack.worker is not None
    extra = {"metadata": {"words": 12, "delay": 0.1, "steps": 3}}
    made = httpx.post(
        f"{stack.url}/v1/generations", json={"prompt": "long", "provider": "echo", **extra}
    )
    generation = made.json()["id"]
    step = "one two three four five six seven eight nine ten one two "
    wait_for(
        "the second step", lambda: len(_text(stack, generation)) > len(step), context=stack.logs
    )
    stack.worker.stop(signal.SIGKILL)
    stack.add_worker()
    wait_for("the takeover", lambda: _status(stack, generation) == "completed", context=stack.logs)
    everything = _stored(stack, generation)
    kinds = [e["type"] for e in everything]
    assert kinds.count("start") == 1 and kinds[-1] == "finish", kinds
    assert "data-continued" in kinds
    assert _text(stack, generation) == step * 3
    assert _sdk(stack, generation)["text"].endswith(step * 2)
