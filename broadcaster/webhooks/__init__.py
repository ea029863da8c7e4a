"""Signed webhooks, delivered at least once from the outbox in Redis.

The append script writes a stream's end into its group's outbox in the same step as the
terminal event (``core/scripts/append.lua``), and other packages add events with
``Outbox`` (``outbox``). This room delivers them: it moves outbox entries into one
deliveries stream (``mover``), attempts each with a signed POST (``sender``,
``signing``, the body composed by ``compose``), and keeps the retry schedule in the
consumer group's pending entries (``schedule``, ``queue``), so that any deliverer takes
over what a dead one left. ``deliverer`` runs the loops (in a front-end's lifespan, or
``python -m broadcaster webhooks run``); ``cli`` lists and replays the dead-letter list;
``metrics`` counts deliveries; ``settings`` reads ``BROADCASTER_WEBHOOK_*``.

May import: ``broadcaster.core``.
"""
