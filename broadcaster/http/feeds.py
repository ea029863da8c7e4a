"""Appending a publisher's events to a feed stream, each refusal its HTTP status: shared
by ``POST /v1/streams/{id}/events`` and ``POST /v1/agui/streams/{id}/events``, and the
refusals of the events themselves by the worker protocol's append (route modules import
no other)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from broadcaster.core.eventlog import (
    EventLog,
    EventTooLarge,
    StaleWriter,
    StreamEnded,
    StreamFull,
    WrongKind,
)
from broadcaster.core.events import InvalidEvent
from broadcaster.http.errors import ApiError


@contextmanager
def refused_events() -> Iterator[None]:
    """An append's refusals of the events themselves, each its status and error code:
    the same on every append route (feeds, AG-UI feeds, the worker protocol's)."""
    try:
        yield
    except EventTooLarge as exc:
        raise ApiError(413, "too_large", str(exc)) from None
    except InvalidEvent as exc:
        raise ApiError(422, "invalid_event", str(exc)) from None
    except StreamFull as exc:
        raise ApiError(413, "stream_full", str(exc), last_event_id=exc.last_seq) from None


async def append_feed(
    event_log: EventLog, stream_id: str, events: list[Any], expect_seq: int | None
) -> int:
    """Append to a feed; each reason for refusing becomes its status and error code."""
    try:
        with refused_events():
            return await event_log.append(stream_id, events, kind="feed", expect_seq=expect_seq)
    except StreamEnded as exc:
        raise ApiError(409, "ended", str(exc), last_event_id=exc.last_seq) from None
    except WrongKind as exc:
        raise ApiError(409, "generation", str(exc)) from None
    except StaleWriter as exc:
        raise ApiError(409, "conflict", str(exc), last_event_id=exc.last_seq) from None
