"""The Durable Streams protocol (ElectricSQL's open HTTP protocol for append-only streams
with offsets) over this project's log and fan-out, served at ``/v1/stream/{path}``.

- ``protocol``: the protocol's rules that need no I/O: offsets, cursors, headers,
  content types, JSON batches.
- ``storage``: a Durable Stream's layout in Redis and its scripts (``scripts/ds_*.lua``,
  each prefixed by ``ds_lib.lua``).
- ``live``: live reads (SSE and long-poll) as readers of the hub.

May import: ``broadcaster.core`` and ``broadcaster.fanout`` (live reads are viewers of
the hub).
"""
