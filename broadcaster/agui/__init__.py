"""AG-UI: a generation's events, and a chat's runs, as AG-UI events, resumable.

- ``projection``: the AI SDK's UI message chunks as AG-UI events, what is open after each,
  the prelude that re-opens it and a run's end at a wait; pure.
- ``frames``: AG-UI events as SSE frames (each with an ``id:``), the AI SDK frames they are
  made from, and the AG-UI resume point; pure.
- ``views``: each stream's chunks mapped once per front-end and shared by its AG-UI
  viewers; one response's body (prelude, frames, the end at a wait).
- ``history``: a thread's history as AG-UI messages (the ``MESSAGES_SNAPSHOT`` a run
  and a ``connect`` open with): the chat's UI messages, then an answer folded from its
  AG-UI events; pure.
- ``inbound``: AG-UI events in (an agent that speaks AG-UI) as the AI SDK's UI message
  chunks, the reverse of ``projection``; ``ui_chunks`` is what a worker running an AG-UI
  agent calls; pure.
- ``producers``: the publish path's mapping state per stream, folded from its log and kept
  by the front-end between a producer's requests.
- ``runs``: CopilotKit's ``RunAgentInput`` checked and turned into a chat request, and its
  ``resume`` into decisions; pure.

May import: ``broadcaster.core`` and ``broadcaster.generations`` (a run's request is
checked as a generation request).
"""
