"""Presence: who watches each stream, across every front-end.

- ``counts``: the counts and heartbeats in Redis and their reading, shared by the
  front-ends and the workers (a generation nobody watches may stop), with its script.
- ``tracker``: one front-end's own counts, written to Redis when they change.

May import: ``broadcaster.core``.
"""
