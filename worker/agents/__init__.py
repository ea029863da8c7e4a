"""Bring your own agent (docs/agents.md): agents named in ``WORKER_AGENTS`` served as
providers, each under its own name, with everything the worker gives its model
providers (lease and fencing, merge window, stop, approvals, steering, takeover,
metrics and traces).

The job an agent is handed and the way it asks a person (``job``); one agent step's
chunks as the raw events the worker maps (``chunks``); the agent run as a session of the
step loop, one per attempt (``session``, on ``worker.sessions``); the spec that names
them (``spec``); the framework adapters, each imported only when one of its objects is
named: pydantic-ai's ``Agent`` (``pydantic_agent``), LangGraph's compiled graph
(``langgraph_agent``) and the OpenAI Agents SDK's ``Agent`` (``openai_agents``).

May import: ``broadcaster.core``, ``broadcaster.generations``, and of the worker
``worker.sessions``, ``worker.transcript``, ``worker.tools``, ``worker.mapping``,
``worker.usage``, ``worker.providers.base``, ``worker.providers.parts`` and
``worker.providers.anthropic_stream`` (an agent's Anthropic raw events); of the
frameworks only the module of each one's adapter.
"""
