"""The fan-out engine of a front-end: one reader of Redis per process, and the copy of
each event to every viewer. Knows nothing of HTTP: a viewer is a ``Subscription`` and,
while it is caught up, a function that writes bytes to its socket.

May import: ``broadcaster.core``.
"""
