"""Numbered events in Redis Streams, fanned out over SSE with Last-Event-ID resume.

The names a producer needs; the front-end is ``python -m broadcaster serve``.
"""

from broadcaster.auth import hash_key, mint_viewer_token, verify_viewer_token
from broadcaster.events import TERMINAL_TYPES, Event, InvalidEvent
from broadcaster.log import AppendRefused, StaleWriter, StreamEnded, StreamInfo, WrongKind
from broadcaster.publisher import Publisher

__all__ = [
    "TERMINAL_TYPES",
    "AppendRefused",
    "Event",
    "InvalidEvent",
    "Publisher",
    "StaleWriter",
    "StreamEnded",
    "StreamInfo",
    "WrongKind",
    "hash_key",
    "mint_viewer_token",
    "verify_viewer_token",
]
