"""The LLM worker (``python -m worker run``): takes generation jobs from Redis, runs each
through a model provider (Anthropic, OpenAI-compatible, or the offline fake), and appends
the contract's events to the generation's stream.

Owns the process and its shutdown (``runner``), taking jobs from the queues of the
providers it serves, their leases and the providers' advertisement (``taker``), running
the taken generations with their cancels (``running``), running one generation with its
retries and takeovers (``generation``, ``writer``; going on with a model call that
outlived its worker, ``reattach``), its steps and the tools the worker
runs between them (``stepper``, ``model_call``, ``steps``, ``tools``), a step cut off with
its worker going on from what it showed (``continuation``, ``splice``), the mapping of the
model's stream to events (``mapping``), the provider seam (``providers``), providers whose
calls share one running state over an attempt (``sessions``): the agents it serves
(``agents``, docs/agents.md), its settings (``settings``), metrics (``metrics``) and
command line (``cli``).

May import: ``broadcaster.core``, ``broadcaster.generations`` (the jobs it takes) and
``broadcaster.presence`` (whether anyone still watches). Never the front-end's rooms.
"""
