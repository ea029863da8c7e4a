"""The HTTP front-end (``python -m broadcaster serve``): the FastAPI app with its routers
per resource, access control as dependencies, served by ``broadcaster.transport`` with
its viewers answered from the parser (``broadcaster.viewers``). A route parses,
authorizes, calls its capability and answers.

- ``app``: ``create_app``: the routers, the error handlers and the lifespan.
- ``routes``: one router per resource (a module per resource; none imports another).
- ``resources``: what a front-end holds while it serves, and how the routes reach it.
- ``chat_answers``: a chat's answers as SSE responses (a submit's, a steer's, a run's)
  and the headers that name them.
- ``agui_answers``: a generation or a thread's run as an AG-UI SSE response, with the
  thread's history snapshot for a credential that may read it.
- ``chat_access``: who may use a chat beyond what opens its routes: its owner, or a key.
- ``kept_history``: a submit against the history the server keeps (``{id, message}``
  made whole from the record, ``{id, messages}`` compared with it).
- ``idempotent``: ``Idempotency-Key`` on the routes that start something: checked,
  scoped to its caller, claimed and settled.
- ``minting``: the answer of a token route: a token for a stream or a chat, with the
  lifetime, holder and (a chat's) uses its body asks for, never a use the key lacks.
- ``access``: who may do what, as route dependencies (keys, tokens, rates), and who a
  request is for (``caller``: a generation's user).
- ``budgets``: a user's daily token budget, checked before a generation starts.
- ``stream_ids``: stream ids (and Durable Streams paths) in paths, checked before
  anything else.
- ``bodies``: reading request bodies, bounded as they stream in, strict JSON.
- ``offloop``: the threads that parse, check and convert large bodies off the event
  loop, with a bound on the work that waits for them.
- ``submits``: reading what starts a chat's answer (a chat submit, an AG-UI run):
  credential first, bounded, counted, converted off the loop.
- ``errors``: every error answer, ``{"error": code, "message": text}``.
- ``server``: the app under the transport's server, its viewers asked about first.
- ``event_bodies``: the bodies that carry events (a publish, an AG-UI publish, a worker's
  append), as the models that validate them.
- ``worker_bodies``: the worker protocol's request bodies, as the models that validate them.
- ``openapi``: what ``/openapi.json`` says of the routes' answers beyond what FastAPI
  infers: their bodies, errors with their headers, SSE.
- ``openapi_requests``: what it says of the requests: each JSON body from the model the
  route validates it with, and the headers and query parameters routes read themselves.
- ``openapi_durable``: the same for the Durable Streams routes: the protocol's headers,
  bodies and answers.
- ``openapi_chats``: the answers of a chat's history and an owner's chats.
- ``openapi_worker``: the answers of the worker protocol's routes (``/v1/worker``).
- ``openapi_finish``: the document's finishing: what FastAPI generates by itself,
  amended (stream ids, 422, credentials).
- ``forks``: a Durable Streams fork as its route makes it: its budget's payer, and its
  refusals as answers.
- ``feeds``: a publisher's events appended to a feed, each refusal its status (the
  stream route's and AG-UI's publish).
- ``metrics``: the front-end's Prometheus metrics.
- ``settings``: the front-end's settings (``BROADCASTER_*``).

May import: ``broadcaster.core``, ``broadcaster.auth``, ``broadcaster.generations``,
``broadcaster.presence``, ``broadcaster.chat``, ``broadcaster.durable``,
``broadcaster.dashboard``, ``broadcaster.fanout``, ``broadcaster.webhooks``,
``broadcaster.agui``, ``broadcaster.viewers`` and ``broadcaster.transport``.
"""
