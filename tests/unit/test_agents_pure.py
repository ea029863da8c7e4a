"""The pure parts of the agents (worker/agents/): the spec, the settings that serve
them, the job's approvals, one step's chunks as raw events through the worker's own
mapping, and the pydantic-ai adapter's history rebuilt from a log."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from broadcaster.http.settings import Settings as FrontendSettings
from worker.agents.chunks import AgentError, StepChunks
from worker.agents.job import AgentJob, ApprovalPending, Asked
from worker.agents.spec import AgentSpecError, agent_names, load_agents
from worker.mapping import EventMapper
from worker.providers.parts import MessageStart
from worker.settings import WorkerSettings

pytestmark = pytest.mark.unit


def test_the_spec_names_agents_and_refuses_bad_names() -> None:
    assert agent_names("a=m:x, b-2=m.n:y") == ("a", "b-2")
    for bad, said in [
        ("support", "not of the form"),
        ("Support=m:x", "must match"),
        ("anthropic=m:x", "taken"),
        ("a=m:x,a=m:y", "taken"),
    ]:
        with pytest.raises(AgentSpecError, match=said):
            agent_names(bad)
    with pytest.raises(AgentSpecError, match="cannot import"):
        load_agents("a=no_such_module_here:x")
    with pytest.raises(AgentSpecError, match="neither"):
        load_agents("a=tests.support.agents:WORDS")
    found = load_agents("e=tests.support.agents:echo,h=tests.support.agents:helper")
    assert set(found) == {"e", "h"} and all(callable(f) for f in found.values())


def test_a_worker_with_agents_alone_serves_only_them() -> None:
    only = WorkerSettings(agents="support=m:x")
    assert only.served() == ("support",)
    both = WorkerSettings(agents="support=m:x", providers="anthropic,support")
    assert both.served() == ("anthropic", "support")
    faked = WorkerSettings(agents="support=m:x", providers="fake,support")
    assert faked.served() == ("fake", "support")
    with pytest.raises(ValueError, match="unknown provider"):
        WorkerSettings(agents="support=m:x", providers="anthropic,other")
    assert WorkerSettings().served() == ("anthropic",)


def _job(events: list[dict[str, Any]] | None = None, **request: Any) -> AgentJob:
    return AgentJob("g1", "helper", {"prompt": "hi", **request}, events or [])


def test_a_front_end_defaults_to_and_serves_agents_by_name() -> None:
    settings = FrontendSettings(default_provider="support", providers="support,anthropic")
    assert settings.admission().default_provider == "support"
    assert settings.served_providers() == {"support", "anthropic"}
    assert settings.request_defaults().provider == "support"
    with pytest.raises(ValidationError, match="default_provider"):
        FrontendSettings(default_provider="Support!")
    with pytest.raises(ValueError, match=r"not a provider name: \['a b'\]"):
        FrontendSettings(providers="anthropic,a b").served_providers()


def test_an_approval_without_a_decision_suspends_and_with_one_answers() -> None:
    with pytest.raises(ApprovalPending) as asked:
        _job().approvals([Asked("c1", "wipe", {}), Asked("c2", "wipe", {})])
    assert [a.call_id for a in asked.value.asked] == ["c1", "c2"]
    decided = {"type": "data-approval", "data": {"toolCallId": "c1", "approved": False}}
    assert _job([decided]).approval("c1", "wipe", {}).approved is False
    job = _job()
    job.steer(["shorter"])
    assert job.steering() == ["shorter"] and job.steering() == []


def _mapped(chunks: list[dict[str, Any]], client: frozenset[str] = frozenset()) -> list[Any]:
    step = StepChunks(client)
    mapper = EventMapper("m1")
    out = mapper.feed(MessageStart("a"))
    for chunk in chunks:
        for raw in step.feed(chunk):
            out += mapper.feed(raw)
    for raw in step.close():
        out += mapper.feed(raw)
    return out


def test_ui_chunks_become_the_same_contract_events() -> None:
    out = _mapped(
        [
            {"type": "start"},
            {"type": "start-step"},
            {"type": "text-start", "id": "a"},
            {"type": "text-delta", "id": "a", "delta": "Hel"},
            {"type": "text-delta", "id": "a", "delta": "lo"},
            {"type": "text-end", "id": "a"},
            {"type": "tool-input-available", "toolCallId": "c1", "toolName": "own", "input": {}},
            {"type": "tool-output-available", "toolCallId": "c1", "output": {"n": 1}},
            {"type": "tool-input-start", "toolCallId": "c2", "toolName": "client"},
            {"type": "tool-input-delta", "toolCallId": "c2", "inputTextDelta": '{"q":'},
            {"type": "tool-input-delta", "toolCallId": "c2", "inputTextDelta": "1}"},
            {"type": "tool-input-available", "toolCallId": "c2", "toolName": "client"},
            {"type": "data-note", "data": {"x": 1}},
            {"type": "data-approval", "data": {"toolCallId": "c2", "approved": True}},
            {"type": "finish"},
        ],
        frozenset({"client"}),
    )
    kinds = [e["type"] for e in out]
    assert kinds == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-available",
        "tool-output-available",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-delta",
        "tool-input-available",
        "data-note",
    ]
    own, client = out[8], out[13]
    assert own["providerExecuted"] is True and own["input"] == {}
    assert "providerExecuted" not in client and client["input"] == {"q": 1}
    assert "".join(e["delta"] for e in out if e["type"] == "text-delta") == "Hello"


def test_an_error_chunk_or_a_non_chunk_fails_the_step() -> None:
    with pytest.raises(AgentError, match="boom"):
        StepChunks(frozenset()).feed({"type": "error", "errorText": "boom"})
    with pytest.raises(AgentError, match="not a chunk"):
        StepChunks(frozenset()).feed({"no": "type"})


def test_a_pydantic_ai_run_goes_on_from_the_log() -> None:
    """After a decision: the conversation, the step with both calls and the return of
    the one that ran, and the decision as a deferred result."""
    from pydantic_ai import ToolDenied
    from pydantic_ai.messages import ModelRequest, ModelResponse, ToolCallPart, ToolReturnPart

    from worker.agents.pydantic_agent import starting_point

    step: list[dict[str, Any]] = [
        {"type": "text-start", "id": "p0"},
        {"type": "text-delta", "id": "p0", "delta": "Let me."},
        {"type": "text-end", "id": "p0"},
        {"type": "tool-input-available", "toolCallId": "w", "toolName": "weather", "input": {}},
        {"type": "tool-output-available", "toolCallId": "w", "output": "sunny"},
        {"type": "tool-input-available", "toolCallId": "d", "toolName": "delete", "input": {}},
        {"type": "tool-approval-request", "toolCallId": "d", "approvalId": "a1"},
    ]
    decided = {"type": "data-approval", "data": {"toolCallId": "d", "approved": False}}
    log = [{"type": "start"}, {"type": "start-step"}, *step, decided]
    prompt, history, results = starting_point(_job(log))
    assert prompt is None
    first, response, returns = history
    assert isinstance(first, ModelRequest) and isinstance(response, ModelResponse)
    assert [p.tool_call_id for p in response.parts if isinstance(p, ToolCallPart)] == ["w", "d"]
    assert isinstance(returns, ModelRequest)
    assert [
        (p.tool_call_id, p.content) for p in returns.parts if isinstance(p, ToolReturnPart)
    ] == [("w", "sunny")]
    assert results is not None and isinstance(results.approvals["d"], ToolDenied)
    fresh_prompt, fresh_history, none = starting_point(_job(prompt="what now"))
    assert (fresh_prompt, fresh_history, none) == ("what now", [], None)
