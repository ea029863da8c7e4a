"""Dashboards: many streams on one SSE connection (``GET /v1/events``).

- ``cursor``: the names a prefix covers, and the connection's resume point, one
  ``Last-Event-ID`` carrying every stream's position; pure.
- ``feed``: the connection, one viewer of each stream it follows on the hub's topics:
  the fan-out's hooks (its delivery path) and the connection's task, with its catch-up
  (the streams it starts to follow, read together, and each one's history, compacted).
- ``wrapping``: each event as the connection's frame, and a live run's events in the
  forms the connections following its stream share; pure.

May import: ``broadcaster.core`` and ``broadcaster.fanout`` (a dashboard is a viewer of
the hub).
"""
