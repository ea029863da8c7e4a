"""Generations: a request to a model, queued for a worker, and its life around the
events it writes.

- ``request``: the generation request (Anthropic's Messages shape), checked before
  anything is stored.
- ``jobs``: the job queues, one Redis Stream per model provider.
- ``lifecycle``: a generation created, claimed by one worker at a time and released,
  with its scripts (``scripts/``).
- ``content``: a generation's assistant turn folded from its events.
- ``overdue``: generations nobody took in time end with ``error``.

May import: ``broadcaster.core``.
"""
