"""An OpenAI Agents SDK ``Agent`` served by the worker (``WORKER_AGENTS``, docs/agents.md,
worker/agents/openai_agents.py) behind ``/v1/chat``: ``assistant`` in
tests/support/openai_agents.py, on the SDK's Chat Completions model, its client pointed
at the local fake OpenAI server (tests/support/fake_openai.py), which plays each answer
the test routes to it and records each request and whether its client left.

Real processes: a Redis of the module's own, a front-end and a worker that serves only
the agent, with a short lease so that a takeover comes soon. The answers are read as the
AI SDK reads them (tests/clients/aisdk/read.mjs) and as the project's own stream parsing
does.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from broadcaster.core.events import Usage
from tests.support.agent_chats import live as _live
from tests.support.agent_chats import running_text as _running_text
from tests.support.agent_chats import sdk_message as _sdk
from tests.support.agent_chats import send as _chat
from tests.support.agent_chats import stack_marks as _marks
from tests.support.agent_chats import status as _status
from tests.support.agent_chats import stored as _stored_events
from tests.support.agent_chats import turn_text as _turn_text
from tests.support.chat_tabs import Tab, body, events, user
from tests.support.fake_openai import FakeOpenAIServer, delay, reply, streamed_call
from tests.support.polling import wait_for
from tests.support.procs import ROOT
from tests.support.provider_fixtures import oai_srv
from tests.support.stacks import Stack, start_stack

__all__ = ["oai_srv"]  # the fake OpenAI server: a module-scoped fixture

AGENT = "assistant"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, oai_srv: FakeOpenAIServer) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("agents-openai")
    env = {
        "WORKER_AGENTS": f"{AGENT}=tests.support.openai_agents:assistant",
        "WORKER_PROVIDERS": AGENT,
        "OPENAI_AGENTS_FAKE_URL": oai_srv.base_url,
        "WORKER_LEASE_SECONDS": "2",  # a takeover comes soon
        "ANTHROPIC_API_KEY": "",
        "AGENT_MARKS": str(tmp / "marks.jsonl"),
        "PYTHONPATH": str(ROOT),
    }
    s = start_stack(tmp, "agents-openai", env)
    s.root, s.worker_env = tmp, env
    try:
        wait_for("the agent advertised", lambda: AGENT in _live(s), context=s.logs)
        yield s
    finally:
        s.stop()


def _asked(srv: FakeOpenAIServer, marker: str) -> list[dict[str, Any]]:
    """The model requests whose conversation holds ``marker``, as sent."""
    return [r.body for r in srv.requests if marker in str(r.body.get("messages"))]


def _text(got: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in got if e["type"] == "text-delta")


def test_the_agents_answer_streams_and_is_read_back(
    stack: Stack, oai_srv: FakeOpenAIServer
) -> None:
    oai_srv.route("say hello", reply(text=["Hel", "lo ", "from the agent."]))
    posted = _chat(stack, "oa-hello", "say hello", AGENT)
    assert posted.status_code == 200, posted.text
    got = events(posted.content)
    kinds = [e["type"] for e in got]
    assert kinds[0] == "start" and kinds[-1] == "finish" and kinds.count("start-step") == 1, kinds
    assert _text(got) == "Hello from the agent."
    (sent,) = _asked(oai_srv, "say hello")
    assert sent["model"] == "gpt-fake" and sent["stream"] is True
    assert sent["messages"][0]["role"] == "system"
    assert sent["messages"][-1] == {"role": "user", "content": "say hello"}
    message = _sdk(stack, posted.headers["x-generation-id"])
    assert message["text"] == "Hello from the agent." and message["done"] is True
    listed = httpx.get(f"{stack.api}/oa-hello/messages").json()["messages"]
    assert listed[-1]["role"] == "assistant" and listed[-1]["parts"][-1]["text"] == _text(got)


def test_the_agent_runs_its_tool_and_the_model_gets_its_output(
    stack: Stack, oai_srv: FakeOpenAIServer
) -> None:
    call = streamed_call("call_oa_weather", "weather", ['{"city"', ': "Paris"}'])
    counts = {"prompt_tokens": 50, "completion_tokens": 7, "reasoning_tokens": 2}
    asked = reply(text=["Let me look."], tools=[call], cached_tokens=32, **counts)
    oai_srv.route("what is the weather", asked)
    oai_srv.route("sunny in Paris", reply(text=["It is sunny in Paris."], prompt_tokens=80))
    posted = _chat(stack, "oa-weather", "what is the weather", AGENT)
    assert posted.status_code == 200, posted.text
    got = events(posted.content)
    kinds = [e["type"] for e in got]
    assert kinds[-1] == "finish" and kinds.count("start-step") == 2, kinds
    shown = next(e for e in got if e["type"] == "tool-input-available")
    assert shown["toolName"] == "weather" and shown["input"] == {"city": "Paris"}
    assert shown["providerExecuted"] is True
    output = next(e for e in got if e["type"] == "tool-output-available")
    assert output["toolCallId"] == "call_oa_weather" and output["output"] == "sunny in Paris"
    assert _text(got) == "Let me look.It is sunny in Paris."
    assert [m["city"] for m in _marks(stack, "oa weather")] == ["Paris"]
    told = _asked(oai_srv, "sunny in Paris")[-1]["messages"][-1]
    assert told == {"role": "tool", "tool_call_id": "call_oa_weather", "content": "sunny in Paris"}
    message = _sdk(stack, posted.headers["x-generation-id"])
    (tool,) = message["tools"]
    assert tool["toolName"] == "weather" and tool["state"] == "output-available"
    # The SDK's own count of the run (its context's usage): both turns, as the server said.
    said = Usage(50, 7, cache_read=32, reasoning=2) + Usage(80, 1)
    assert got[-1]["messageMetadata"]["usage"] == said.ai_sdk()


def test_a_stop_closes_the_model_call_and_makes_no_other(
    stack: Stack, oai_srv: FakeOpenAIServer
) -> None:
    slow = reply(text=["word "] * 60)
    # each word a tenth of a second after the last: the answer is still streaming at the stop
    played = [slow[0]] + [s for step in slow[1:61] for s in (step, delay(0.1))] + slow[61:]
    oai_srv.route("a slow answer", played)
    chat = "oa-stop"
    first = Tab(stack, body(chat, user("a slow answer", "oa-stop-u1"), provider=AGENT))
    wait_for("the first words", lambda: _running_text(stack, chat), context=stack.logs)
    stopped = httpx.post(f"{stack.api}/{chat}/stop")
    assert stopped.status_code in (200, 202), stopped.text
    got = events(first.result().content)
    assert got[-1]["type"] == "abort", [e["type"] for e in got]
    (index,) = [i for i, r in enumerate(oai_srv.requests) if "a slow answer" in str(r.body)]
    wait_for("the model request closed", lambda: oai_srv.client_closed(index), context=stack.logs)
    assert not oai_srv.exchanges[index].completed
    generation = first.result().headers["x-generation-id"]
    wait_for("the answer ended", lambda: _status(stack, generation) != "running")
    assert len(_asked(oai_srv, "a slow answer")) == 1


def test_an_approved_tool_runs_once_decided_and_the_run_goes_on(
    stack: Stack, oai_srv: FakeOpenAIServer
) -> None:
    chat = "oa-delete"
    call = streamed_call("call_oa_delete", "delete", ['{"path": "/tmp/oa"}'])
    oai_srv.route("please delete it", reply(text=["Sure."], tools=[call]))
    oai_srv.route("deleted /tmp/oa", reply(text=["Deleted it."]))
    posted = _chat(stack, chat, "please delete it", AGENT)
    assert posted.status_code == 200, posted.text
    generation = posted.headers["x-generation-id"]
    got = events(posted.content)
    kinds = [e["type"] for e in got]
    assert kinds[-3:] == ["tool-input-available", "tool-approval-request", "finish"], kinds
    asked = got[-2]
    assert asked["toolCallId"] == "call_oa_delete"
    assert got[-3]["toolName"] == "delete" and got[-3]["input"] == {"path": "/tmp/oa"}
    assert _status(stack, generation) == "waiting"
    assert _marks(stack, "oa delete") == []
    decide = {"approvalId": asked["approvalId"], "approved": True}
    decided = httpx.post(f"{stack.api}/{chat}/approvals", json=decide)
    assert decided.status_code == 200 and decided.json()["resumed"], decided.text
    wait_for("the end", lambda: _status(stack, generation) == "completed", context=stack.logs)
    assert [m["path"] for m in _marks(stack, "oa delete")] == ["/tmp/oa"]
    everything = _stored_events(stack, generation)
    kinds = [e["type"] for e in everything]
    k = kinds.index("data-approval")
    output = next(e for e in everything[k:] if e["type"] == "tool-output-available")
    assert output["toolCallId"] == "call_oa_delete" and output["output"] == "deleted /tmp/oa"
    assert _text(everything[k:]) == "Deleted it."
    assert kinds.count("start") == 1 and kinds[-1] == "finish"
    # Two model calls: the interrupted run rebuilt from the log called none.
    sent = _asked(oai_srv, "please delete it")
    assert len(sent) == 2
    assert sent[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_oa_delete",
        "content": "deleted /tmp/oa",
    }
    final = httpx.get(f"{stack.api}/{chat}/messages").json()["messages"][-1]
    tool = next(p for p in final["parts"] if p["type"] == "tool-delete")
    assert tool["state"] == "output-available" and tool["approval"]["approved"] is True


def test_a_denied_tool_does_not_run_and_the_model_is_told_why(
    stack: Stack, oai_srv: FakeOpenAIServer
) -> None:
    chat = "oa-keep"
    call = streamed_call("call_oa_keep", "delete", ['{"path": "/tmp/keep"}'])
    oai_srv.route("please remove it", reply(text=["Removing."], tools=[call]))
    oai_srv.route("not that one", reply(text=["Kept it."]))
    posted = _chat(stack, chat, "please remove it", AGENT)
    generation = posted.headers["x-generation-id"]
    asked = events(posted.content)[-2]
    assert asked["type"] == "tool-approval-request", asked
    decide = {"approvalId": asked["approvalId"], "approved": False, "reason": "not that one"}
    assert httpx.post(f"{stack.api}/{chat}/approvals", json=decide).status_code == 200
    wait_for("the end", lambda: _status(stack, generation) == "completed", context=stack.logs)
    everything = _stored_events(stack, generation)
    kinds = [e["type"] for e in everything]
    assert "tool-output-denied" in kinds and "tool-output-available" not in kinds, kinds
    assert _text(everything).endswith("Kept it.")
    assert [m for m in _marks(stack, "oa delete") if m["path"] == "/tmp/keep"] == []
    told = _asked(oai_srv, "please remove it")[-1]["messages"][-1]
    assert told == {"role": "tool", "tool_call_id": "call_oa_keep", "content": "not that one"}


def test_a_worker_killed_mid_answer_is_taken_over(stack: Stack, oai_srv: FakeOpenAIServer) -> None:
    """Last: it kills the module's worker and starts the next one."""
    assert stack.worker is not None
    slow = reply(text=["cut "] * 80)
    played = [slow[0]] + [s for step in slow[1:81] for s in (step, delay(0.1))] + slow[81:]
    oai_srv.route("a long answer", played, reply(text=["The whole answer."]))
    posted = httpx.post(
        f"{stack.url}/v1/generations", json={"prompt": "a long answer", "provider": AGENT}
    )
    generation = posted.json()["id"]
    wait_for(
        "the first words",
        lambda: "cut" in _turn_text(stack, generation),
        context=stack.logs,
    )
    stack.worker.stop(signal.SIGKILL)
    stack.add_worker()
    wait_for("the takeover", lambda: _status(stack, generation) == "completed", context=stack.logs)
    everything = _stored_events(stack, generation)
    kinds = [e["type"] for e in everything]
    assert kinds.count("start") == 1 and kinds[-1] == "finish", kinds
    assert "data-continued" in kinds
    assert _text(everything).endswith("The whole answer.")
    # The step made again from the conversation: the model was asked the same twice.
    sent = _asked(oai_srv, "a long answer")
    assert len(sent) == 2 and sent[0]["messages"] == sent[1]["messages"]
    assert _sdk(stack, generation)["text"].endswith("The whole answer.")
