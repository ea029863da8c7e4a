"""Numbered events in Redis Streams, fanned out over SSE with Last-Event-ID resume.

The names a producer needs; the front-end is ``python -m broadcaster serve``.
"""

from broadcaster.auth import hash_key, mint_viewer_token, verify_viewer_token
from broadcaster.client import (
    ClientEvent,
    PublishRefused,
    ResumePointAhead,
    StreamClient,
    StreamClientError,
    StreamNotFound,
    StreamUnavailable,
    Unauthorized,
)
from broadcaster.events import TERMINAL_TYPES, Event, InvalidEvent
from broadcaster.log import AppendRefused, StaleWriter, StreamEnded, StreamInfo, WrongKind
from broadcaster.publisher import Publisher

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
    "mint_viewer_token",
    "verify_viewer_token",
]
