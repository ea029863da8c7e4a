"""Numbered events in Redis Streams, fanned out over SSE with Last-Event-ID resume.

The names a producer needs; the front-end is ``python -m broadcaster serve``.
"""

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
from broadcaster.core.auth import hash_key, mint_viewer_token, verify_viewer_token
from broadcaster.core.events import TERMINAL_TYPES, Event, InvalidEvent
from broadcaster.core.log import AppendRefused, StaleWriter, StreamEnded, StreamInfo, WrongKind
from broadcaster.core.tokens import mint_token

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
