"""The transport: HTTP/1.1 connections under uvicorn and httptools, the only package that
knows them (an import contract holds every other to that). A viewer's response reaches
its connection through one interface (``seam.Connection``); the app's requests
reach it through uvicorn's ASGI cycle with the scope extensions ``seam`` names.

- ``seam``: the ``Connection`` a viewer writes to, ends, detaches from and hears
  lost, and the ASGI scope extensions that offer it to a response of the app.
- ``fast``: what the connection asks before a request goes to the app (``FastPath``):
  whether to answer a viewer from the parser's callback, and how (``Opening``).
- ``wire``: uvicorn's httptools protocol with what the front-end adds: direct writes,
  detached responses, the fast path, pipelining kept in order, limits on the head, a
  lingering close.
- ``head``: a connection's first protocol: a plain GET of a stream's events answered
  from its head with no HTTP protocol made, the protocol its viewer's line from then on;
  anything else handed to ``wire``'s.
- ``line``: a viewer answered from the parser, once its head is written: its socket
  handed to a small protocol that is its connection, writer and ``send``, and back to
  HTTP when its response ends.
- ``cycles``: uvicorn's request cycle extended: a response that outlives its task, the
  ``Connection`` bound to it, writes held and sent as one.
- ``linger``: a lingering close: an answer written before its request's body was read
  reaches the client, what it still sends dropped unparsed, for a bounded time.
- ``turns``: viewers waiting for their turn at the admission rate, on one timer.
- ``serving``: uvicorn's server with a drain first and a shutdown that does not hang.
- ``gcfreeze``: full garbage collections that scan only what is new.

uvicorn is pinned to the release this was written against (``==0.54.*``):
tests/unit/test_uvicorn_pin.py hashes the source of every member of it that is copied
or overridden here and says what to re-read when one changes.

May import: ``broadcaster.core``.
"""
