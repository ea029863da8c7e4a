"""The Durable Streams protocol (ElectricSQL's open HTTP protocol for append-only streams
with offsets) over this project's log and fan-out, served at ``/v1/stream/{path}``.

- ``protocol``: the protocol's rules that need no I/O: offsets, cursors, a request's
  headers and query parsed, an answer's headers, content types, JSON batches.
- ``storage``: a Durable Stream's layout in Redis and its scripts (``scripts/ds_*.lua``,
  each prefixed by ``ds_lib.lua``).
- ``live``: live reads (SSE and long-poll) as readers of the hub.
- ``reads``: what a read finds: the stream or why none (``Unreadable``), whether its
  history holds an offset, the page a catch-up or long-poll answers, an SSE reader.
- ``fork``: copy-on-fork: the fork point, what a fork inherits, the copy charged a page
  at a time, and its rollback; why a fork is refused (``Refused``).
- ``budget``: what a client's forks may copy per minute, counted in Redis as the rate
  limit is (``auth.quota``).

May import: ``broadcaster.core``, ``broadcaster.auth`` (the fork budget's counters) and
``broadcaster.fanout`` (live reads are viewers of the hub).
"""
