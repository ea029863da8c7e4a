"""``WORKER_AGENTS``: ``name=package.module:attr``, comma-separated, each attr an agent
(``load_agents``). An agent is an async callable of the job yielding chunks
(``worker.agents.job``), or a framework's object served by its adapter, imported only
when one is named: a pydantic-ai ``Agent`` (``pydantic_agent``, the ``pydantic-ai``
extra), a LangGraph compiled graph (``langgraph_agent``, the ``langgraph`` extra), an
OpenAI Agents SDK ``Agent`` (``openai_agents``, the ``openai-agents`` extra). Checked at
start-up, so a bad spec stops the worker before it takes a job.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from broadcaster.core import names
from broadcaster.generations.request import PROVIDERS
from worker.agents.job import AgentFn
from worker.tools import import_named

RESERVED = (*PROVIDERS, "fake")
"""Names an agent may not take: the built-in providers'."""


class AgentSpecError(ValueError):
    """``WORKER_AGENTS`` names something that is not an agent, or names it badly."""


def agent_names(spec: str | None) -> tuple[str, ...]:
    """The names ``spec`` gives its agents, checked (nothing imported)."""
    found: list[str] = []
    for part in (p.strip() for p in (spec or "").split(",")):
        if not part:
            continue
        name, eq, target = part.partition("=")
        name = name.strip()
        if not eq or ":" not in target:
            raise AgentSpecError(
                f"WORKER_AGENTS: {part!r} is not of the form name=package.module:attr"
            )
        if not names.is_provider_name(name):
            raise AgentSpecError(
                f"WORKER_AGENTS: agent name {name!r} must match {names.PROVIDER_NAME_GRAMMAR}"
            )
        if name in RESERVED or name in found:
            raise AgentSpecError(f"WORKER_AGENTS: agent name {name!r} is taken")
        found.append(name)
    return tuple(found)


def as_agent(name: str, found: Any) -> AgentFn:
    """The agent function for what a spec names: a framework's object through its
    adapter (imported only now), or an async callable as it is."""
    origin = type(found).__module__.split(".")[0]
    if origin == "pydantic_ai":
        from worker.agents.pydantic_agent import serve

        return serve(found)
    if origin == "langgraph":
        from worker.agents.langgraph_agent import serve as serve_graph

        return serve_graph(found)
    if _is_sdk_agent(found):
        from worker.agents.openai_agents import serve as serve_sdk_agent

        return serve_sdk_agent(found)
    if callable(found) and (inspect.isasyncgenfunction(found) or not inspect.isclass(found)):
        return found  # type: ignore[no-any-return]
    raise AgentSpecError(
        f"WORKER_AGENTS: {name} is neither an async callable of the job, a pydantic-ai "
        f"Agent, a LangGraph compiled graph nor an OpenAI Agents SDK Agent "
        f"({type(found).__name__})"
    )


def _is_sdk_agent(found: Any) -> bool:
    """An OpenAI Agents SDK ``Agent`` (its package is ``agents``): the module that made it
    imported the SDK already, so it is looked up, never imported, here."""
    sdk = sys.modules.get("agents")
    agent_class = getattr(sdk, "Agent", None) if sdk is not None else None
    return isinstance(agent_class, type) and isinstance(found, agent_class)


def load_agents(spec: str | None) -> dict[str, AgentFn]:
    """The agents ``spec`` names, by name; ``AgentSpecError`` naming the first problem."""
    names = agent_names(spec)
    targets = [p.partition("=")[2] for p in (spec or "").split(",") if p.strip()]
    return {
        name: as_agent(name, import_named(t, "WORKER_AGENTS", AgentSpecError))
        for name, t in zip(names, targets, strict=True)
    }


__all__ = ["AgentSpecError", "agent_names", "as_agent", "load_agents"]
