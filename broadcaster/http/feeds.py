"""Appending a publisher's events to a feed stream, each refusal its HTTP status: shared
by ``POST /v1/streams/{id}/events`` and ``POST /v1/agui/streams/{id}/events``, and the
refusals of the events themselves by the worker protocol's append (route modules import
no other). A large publish body's events are checked as the append will check them
where the body is parsed (``read_batch``), so that one refused is never encoded on the
event loop; the refusal is answered where the append would have answered it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from broadcaster.core.eventlog import (
    EventLog,
    EventTooLarge,
    StaleWriter,
    StreamEnded,
    StreamFull,
    WrongKind,
)
from broadcaster.core.events import InvalidEvent
from broadcaster.http.bodies import offloop, parse_json, read_bytes
from broadcaster.http.errors import ApiError
from broadcaster.http.event_bodies import PublishBody, events_in
from broadcaster.http.offloop import INLINE_BYTES
from broadcaster.http.settings import Settings

Check = Callable[[Sequence[dict[str, Any]]], list[tuple[str, bytes]]]
"""What an append checks of its events before it sends anything, and makes of them
(``EventLog.checked``)."""


@dataclass(frozen=True, slots=True)
class Batch:
    """A publish body's events, and what an append would refuse them with (``refused``;
    None: nothing, or not checked yet)."""

    events: list[dict[str, Any]]
    refused: ApiError | None = None
    stored: list[tuple[str, bytes]] | None = None
    """The events as the append stores them, when checked here (the append then does
    not make them again on the event loop)."""


async def read_batch(request: Request, settings: Settings, check: Check) -> Batch:
    """A ``POST /v1/streams/{id}/events`` body, read (``bodies.read_bytes``) and parsed
    as ``read_json`` does, its events (``events_in``); a large one's also ``check``ed in
    the same call of the pool."""
    raw = await read_bytes(request, settings.max_body_bytes, values=settings.max_json_values)
    large = len(raw) >= INLINE_BYTES
    return await offloop(request).run_sized(len(raw), parsed_batch, raw, check, large=large)


def parsed_batch(raw: bytes, check: Check, *, large: bool) -> Batch:
    """``raw``'s events; with ``large``, and what an append would refuse them with."""
    events = events_in(PublishBody, parse_json(raw))
    if not large:
        return Batch(events)
    try:
        with refused_events():
            stored = check(events)
    except ApiError as exc:
        return Batch(events, exc)
    return Batch(events, stored=stored)


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
    event_log: EventLog,
    stream_id: str,
    events: list[Any],
    expect_seq: int | None,
    stored: list[tuple[str, bytes]] | None = None,
) -> int:
    """Append to a feed; each reason for refusing becomes its status and error code."""
    try:
        with refused_events():
            return await event_log.append(
                stream_id, events, kind="feed", expect_seq=expect_seq, stored=stored
            )
    except StreamEnded as exc:
        raise ApiError(409, "ended", str(exc), last_event_id=exc.last_seq) from None
    except WrongKind as exc:
        raise ApiError(409, "generation", str(exc)) from None
    except StaleWriter as exc:
        raise ApiError(409, "conflict", str(exc), last_event_id=exc.last_seq) from None
