"""What serves a viewer: what its request asks, whether it is let in, its response and
its connection, for the app's routes and for the viewers answered from the parser alike
(ARCHITECTURE.md, "The viewer's path").

- ``ask``: ``ViewerAsk``, read once by one of two readers: from a request of the app
  (``from_request``), from the parser's head (``from_head``).
- ``decision``: ``decide(ask, state)``: admit, refuse or later, every check in one
  order; the rule of reading a stream (``read_refusal``) and what the log says of a
  resume point (``stream_refusal``).
- ``refusals``: a refusal as the project's error body, and as a ``retry:`` for a
  browser's ``EventSource`` refused for want of room.
- ``slots``: the open responses per client (token subject, address).
- ``headers``: the security headers of every answer and those of a streaming answer.
- ``opening``: ``Viewing``, what a front-end serves viewers with, and the way every SSE
  route's response opens: admitted, its turn, its slot, the stream's state.
- ``response``: the ASGI response that streams SSE bytes to one viewer, and ``Handed``,
  a caught-up viewer's response that goes on without its task.
- ``fastpath``: a viewer of one stream answered from the parser's callback, with no ASGI
  scope and no task (``transport.fast.FastPath``).
- ``expiry``: open responses that end with their token (its ``exp`` plus the leeway, or
  its revocation): one timer and one-second buckets for all of them.
- ``chat_follow``: a chat's stream (``GET /v1/chat/{id}/events``): every answer of the
  chat in turn, resumable across turns.
- ``proxies``: forwarded headers not believed (a proxy that is not trusted), counted
  for ``/readyz`` and ``/metrics``.

May import: ``broadcaster.core``, ``broadcaster.auth``, ``broadcaster.chat``,
``broadcaster.fanout`` and ``broadcaster.transport``.
"""
