"""Clients of a deployment: ``StreamClient`` (``stream_client``: read a stream over
HTTP, resuming by itself), ``Publisher`` (``publisher``: append from Python, straight to
Redis) and ``tail`` (a terminal viewer). They use the public HTTP API, or the core's
event log, and nothing of the front-end's insides.

May import: ``broadcaster.core``.
"""
