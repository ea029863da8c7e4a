"""``python -m broadcaster bench``: the load generator that measures a running
deployment from outside (viewers over real sockets, publishes through ``Publisher``).

May import: ``broadcaster.core`` and ``broadcaster.clients``.
"""
