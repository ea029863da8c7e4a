"""The ground floor every process stands on: what an event is, where it lives in Redis,
and how to reach Redis. Nothing here knows a capability.

- ``names``: every name accepted from outside (stream ids, event types, resume points,
  origins...), each with its grammar and its one check.
- ``events``: the event vocabulary, and an event as the JSON a viewer reads.
- ``sse``: Server-Sent Events framing, bytes in and bytes out.
- ``keys``: every Redis key, field and TTL, each with its reason.
- ``eventlog``: the event log, the only code that appends to a stream, with its script
  (``scripts/append.lua``) and the loader every package's scripts go through.
- ``durability``: when a write is acknowledged (the primary, replicas: ``WAIT``, or their
  disks: ``WAITAOF``), every write path's waits shared by one ``WAIT`` per round.
- ``committer``: one node's rounds: its writes in one pipeline, a barrier and one wait.
- ``coalesce``: one Redis read shared by the callers that ask for the same thing at once.
- ``connection``: Redis clients for a single server, Cluster and Sentinel.
- ``embedded``: the Redis server the project starts itself when none is configured.
- ``settings``: the settings every process shares.
- ``logconfig``: logging setup; every line about a stream carries its id.
- ``tracing``: one trace per generation across processes (OpenTelemetry, when set up).
- ``contain``: failures kept where they happen, logged once a minute and counted.
- ``process``: what a long-running process sets up for itself: the open-file limit
  raised (it holds many sockets), its ``/metrics`` served by its event loop.
- ``lock``: a Redis lock one process holds at a time for a round of shared work,
  released only by its holder (one script).

Here too, the installed version (``version()``, for ``--version``), so that asking for it
imports nothing else.

May import: nothing else of the project.
"""

from __future__ import annotations

import importlib.metadata

DISTRIBUTION = "llm-stream-broadcaster"
"""The distribution that installs ``broadcaster`` and ``worker`` (docs/start/install.md,
"The name")."""


def version() -> str:
    """The installed version."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"
