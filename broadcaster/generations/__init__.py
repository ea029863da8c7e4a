"""Generations: a request to a model, queued for a worker, and its life around the
events it writes.

- ``request``: the generation request (Anthropic's Messages shape), checked before
  anything is stored.
- ``blocks``: the content blocks of its messages, known types checked field by field.
- ``openai_scope``: what of a request the ``openai`` provider can send: one rule, for
  the front-end's check and the worker's translation.
- ``jobs``: the job queues, one Redis Stream per model provider, and how long the
  oldest job has waited for a worker.
- ``lifecycle``: a generation created, claimed by one worker at a time and released,
  cancelled, with its scripts (``scripts/``).
- ``start``: the one way a generation starts: admitted (its provider served, room in
  flight), created, and queued for a worker (a chat's, once the chat names it).
- ``chat_turns``: a chat's model turns as its record keeps them, joined into a request's
  messages; a job that names them resolved when a worker takes it.
- ``content``: a generation's assistant turn folded from its events.
- ``overdue``: generations nobody took in time end with ``error``.
- ``idempotency``: ``Idempotency-Key``: a request's key claimed and its answer kept for
  its retries, with its scripts.
- ``liveness``: which workers live (a subscription each holds while its process does),
  and the look that hands a dead worker's jobs to live ones at once, with its script.
- ``leases``: jobs leased to workers over HTTP: claimed, written under a lease token
  that fences a lapsed owner, renewed, handed back.
- ``waiting``: what the one append that leaves a generation waiting for a person writes
  (the Python worker's and the HTTP workers').
- ``ledger``: what each user's generations used, day by day and model by model, each
  ended generation settled into it once (its script in ``scripts/``).
- ``settling``: a front-end's settling of ended generations' usage: at once when a wake
  says one ended, and by a sweep for those no wake named.

May import: ``broadcaster.core``.
"""
