"""The LLM worker (``python -m worker run``): takes generation jobs from Redis, runs each
through a model provider (Anthropic, OpenAI-compatible, or the offline fake), and appends
the contract's events to the generation's stream.

Its modules, by phase: the process and its shutdown (``daemon``); taking jobs from the
queues of the providers it serves, their leases and the providers' advertisement
(``taker``); dispatching the taken generations, a task each, with their cancels
(``dispatch``); one attempt at a generation, from its claim to its end (``attempt``);
what an attempt that takes a generation over does first, decided once (``takeover``);
the step loop that follows it (``step_loop``): a model call (``model_call``), the
worker's tools the step called (``step_tools``, ``tools``), the steps read back from the
stream (``transcript``); a step cut off with its worker going on from what it showed
(``continuation``, ``splice``); the appends (``writer``); the mapping of the model's
stream to events (``mapping``) and what the calls used (``usage``); the provider seam
(``providers``), providers whose calls share one running state over an attempt
(``sessions``): the agents it serves (``agents``, docs/agents.md); its settings
(``settings``), metrics (``metrics``) and command line (``cli``).

May import: ``broadcaster.core``, ``broadcaster.generations`` (the jobs it takes) and
``broadcaster.presence`` (whether anyone still watches). Never the front-end's rooms.
"""
