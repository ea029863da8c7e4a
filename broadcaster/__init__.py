"""Numbered events in Redis Streams, fanned out over SSE with Last-Event-ID resume.

The ground floor and one package per capability (ARCHITECTURE.md):

- ``core``: what every process needs: names, events, keys, the event log, Redis.
- ``auth``: API keys, access tokens and the keys that verify them.
- ``generations``: the generation request, its queue and its life.
- ``presence``: who watches each stream, across front-ends.
- ``chat``: the AI SDK's chat transport on top of generations.
- ``agui``: generations and chat runs as AG-UI events, resumable.
- ``durable``: the Durable Streams protocol on the same log and fan-out.
- ``dashboard``: many streams on one connection.
- ``webhooks``: signed webhooks from the outbox.
- ``fanout``: a front-end's copy of each event to every viewer.
- ``viewers``: what serves a viewer: what it asks, whether it is let in, its response.
- ``http``: the front-end: routes, access, the server.
- ``transport``: HTTP/1.1 connections under uvicorn and httptools (the only package that
  knows them): direct writes, detached responses, the fast path's answer.
- ``clients``: the Python client, publisher and terminal viewer.
- ``bench``: load from outside, over real sockets.
- ``cli``: ``python -m broadcaster serve | demo | bench | tail | webhooks``.

Here are the names a producer needs, each loaded on first use: importing a module of the
package (the worker imports the core) loads no client or HTTP library it does not use.

May import: everything, lazily.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from broadcaster.auth.credentials import hash_key, mint_viewer_token, verify_viewer_token
    from broadcaster.auth.tokens import mint_token
    from broadcaster.clients.publisher import Publisher
    from broadcaster.clients.stream_client import (
        ClientEvent,
        PublishRefused,
        ResumePointAhead,
        StreamClient,
        StreamClientError,
        StreamNotFound,
        StreamUnavailable,
        Unauthorized,
    )
    from broadcaster.core.eventlog import (
        AppendRefused,
        StaleWriter,
        StreamEnded,
        StreamInfo,
        WrongKind,
    )
    from broadcaster.core.events import TERMINAL_TYPES, Event, InvalidEvent

_WHERE = {
    "broadcaster.clients.publisher": ["Publisher"],
    "broadcaster.clients.stream_client": [
        "ClientEvent",
        "PublishRefused",
        "ResumePointAhead",
        "StreamClient",
        "StreamClientError",
        "StreamNotFound",
        "StreamUnavailable",
        "Unauthorized",
    ],
    "broadcaster.auth.credentials": ["hash_key", "mint_viewer_token", "verify_viewer_token"],
    "broadcaster.auth.tokens": ["mint_token"],
    "broadcaster.core.events": ["TERMINAL_TYPES", "Event", "InvalidEvent"],
    "broadcaster.core.eventlog": [
        "AppendRefused",
        "StaleWriter",
        "StreamEnded",
        "StreamInfo",
        "WrongKind",
    ],
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "TERMINAL_TYPES",
    "AppendRefused",
    "ClientEvent",
    "Event",
    "InvalidEvent",
    "PublishRefused",
    "Publisher",
    "ResumePointAhead",
    "StaleWriter",
    "StreamClient",
    "StreamClientError",
    "StreamEnded",
    "StreamInfo",
    "StreamNotFound",
    "StreamUnavailable",
    "Unauthorized",
    "WrongKind",
    "hash_key",
    "mint_token",
    "mint_viewer_token",
    "verify_viewer_token",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'broadcaster' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
