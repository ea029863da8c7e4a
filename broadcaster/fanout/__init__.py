"""The fan-out engine of a front-end: one reader of Redis per process, and the copy of
each event to every viewer. Knows nothing of HTTP: a viewer is a ``Subscription`` and,
while it is caught up, a function that writes bytes to its socket.

- ``hub``: the streams this front-end watches, their viewers, and the copy of each event.
- ``faults``: what raised in the fan-out, kept to the viewer or stream it concerns.
- ``subscription``: one viewer as the fan-out sees it: a bounded buffer of live frames.
- ``viewer``: one viewer's delivery, every event after its resume point exactly once.
- ``pubsub``: one Redis pub/sub connection, parsed in the event loop's data callback.
- ``push``: the front-end's channel subscriptions, kept whole through reconnects.
- ``arrivals``: viewers that arrive while their stream's topic is being set up wait.
- ``repair``: what push did not bring, read from the log once per stream.
- ``replay``: a stream's history read for viewers, as encoded pages.
- ``shared_replay``: one read of an ended stream's history shared by its viewers.
- ``compact``: replays with consecutive deltas of one part folded into one event; pure.
- ``config``: what a hub is told (``HubConfig``): buffers, keepalives, admission.
- ``keepalive``: keepalives for caught-up viewers, from one task for the process.
- ``wakes``: the channels that wake the front-end's timed work (chats' waiting
  messages, approvals' deadlines), so that none of it polls Redis.

May import: ``broadcaster.core`` and ``broadcaster.presence`` (the hub counts viewers).
"""
