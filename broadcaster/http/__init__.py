"""The HTTP front-end (``python -m broadcaster serve``): the FastAPI app with its routers
per resource, access control as dependencies, served by ``broadcaster.transport`` with
its viewers answered from the parser (``broadcaster.viewers``). A route parses,
authorizes, calls its capability and answers.

- ``app``: ``create_app``: the routers, the error handlers and the lifespan.
- ``routes``: one router per resource (a module per resource; none imports another).
- ``resources``: what a front-end holds while it serves, and how the routes reach it.
- ``chat_answers``: a chat's answers as SSE responses, and the headers that name them.
- ``chat_submits``: ``POST /v1/chat``'s work between its route and the chat's turn.
- ``decisions``: a decision on a tool call an answer waits on, recorded and answered.
- ``agui_answers``: a generation or a thread's run as an AG-UI SSE response.
- ``chat_access``: who may use a chat beyond what opens its routes: its owner, or a key.
- ``kept_history``: a submit against the history the server keeps.
- ``idempotent``: ``Idempotency-Key`` on the routes that start something.
- ``minting``: the answer of a token route, never a use the key lacks.
- ``access``: who may do what, as route dependencies (keys, tokens, rates).
- ``budgets``: a user's daily token budget, checked before a generation starts.
- ``stream_ids``: stream ids (and Durable Streams paths) in paths, checked first.
- ``bodies``: reading request bodies, bounded as they stream in, strict JSON.
- ``offloop``: the threads that parse and convert large bodies off the event loop.
- ``submits``: reading what starts a chat's answer: credential first, bounded, counted.
- ``errors``: every error answer, ``{"error": code, "message": text}``.
- ``server``: the app under the transport's server, its viewers asked about first.
- ``event_bodies``: the bodies that carry events, as the models that validate them.
- ``worker_bodies``: the worker protocol's request bodies, as their models.
- ``openapi``: what ``/openapi.json`` says of the answers beyond what FastAPI infers.
- ``openapi_requests``: what it says of the requests: each body from its model.
- ``openapi_durable``: the same for the Durable Streams routes.
- ``openapi_chats``: the answers of a chat's history and an owner's chats.
- ``openapi_worker``: the answers of the worker protocol's routes (``/v1/worker``).
- ``openapi_finish``: what FastAPI generates by itself, amended.
- ``forks``: a Durable Streams fork as its route makes it: its budget and refusals.
- ``durable_reads``: a Durable Streams read as its route answers it: a page, a long-poll,
  SSE.
- ``feeds``: a publisher's events appended to a feed, each refusal its status.
- ``metrics``: the front-end's Prometheus metrics.
- ``settings``: the front-end's settings (``BROADCASTER_*``).

May import: ``broadcaster.core``, ``broadcaster.auth``, ``broadcaster.generations``,
``broadcaster.presence``, ``broadcaster.chat``, ``broadcaster.durable``,
``broadcaster.dashboard``, ``broadcaster.fanout``, ``broadcaster.webhooks``,
``broadcaster.agui``, ``broadcaster.viewers`` and ``broadcaster.transport``.
"""
