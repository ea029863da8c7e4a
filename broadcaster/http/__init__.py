"""The HTTP front-end (``python -m broadcaster serve``): the FastAPI app with its routers
per resource, access control and limits as dependencies, the SSE response and the
uvicorn server with its direct-write fast path. A route parses, authorizes, calls its
capability and answers.

- ``app``: ``create_app``: the routers, the error handlers and the lifespan.
- ``routes``: one router per resource (a module per resource; none imports another).
- ``resources``: what a front-end holds while it serves, and how the routes reach it.
- ``wakes``: the channels that wake the front-end's timed work (chats' waiting
  messages, approvals' deadlines), so that none of it polls Redis.
- ``viewing``: room for one more SSE viewer (limits, admission rate), and the SSE
  response of one stream after a resume point, which the stream and chat routes share.
- ``chat_answers``: a chat's answers as SSE responses (a submit's, a steer's, a run's)
  and the headers that name them.
- ``minting``: the answer of a token route: a token for a stream or a chat, with the
  lifetime and holder its body asks for.
- ``access``: who may do what, as route dependencies (keys, tokens, rates).
- ``limits``: what one client may hold or cost, and the answers past it.
- ``stream_ids``: stream ids (and Durable Streams paths) in paths, checked before
  anything else.
- ``bodies``: reading request bodies, bounded, JSON in UTF-8 only.
- ``errors``: every error answer, ``{"error": code, "message": text}``.
- ``sse_response``: the ASGI response that streams SSE bytes to one viewer.
- ``fast_viewer``: a viewer of one stream answered from the parser's callback, with no
  ASGI scope and no task, when everything it needs is known in the process.
- ``wire``: what goes over each connection: uvicorn's protocol with the extensions the
  SSE responses use, the fast viewers' answer, and limits on the request head.
- ``server``: uvicorn with a shutdown that does not hang.
- ``openapi``: what ``/openapi.json`` says beyond what FastAPI infers: the routes'
  request bodies and parameters, and their answers (models, errors, SSE).
- ``openapi_durable``: the same for the Durable Streams routes: the protocol's headers,
  bodies and answers.
- ``openapi_finish``: the document's finishing: what FastAPI generates by itself,
  amended (stream ids, 422, credentials).
- ``metrics``: the front-end's Prometheus metrics.
- ``gcfreeze``: full garbage collections that scan only what is new.
- ``settings``: the front-end's settings (``BROADCASTER_*``).

May import: ``broadcaster.core``, ``broadcaster.auth``, ``broadcaster.generations``,
``broadcaster.presence``, ``broadcaster.chat``, ``broadcaster.durable``,
``broadcaster.dashboard``, ``broadcaster.fanout``, ``broadcaster.webhooks`` and
``broadcaster.agui``.
"""
