"""The event vocabulary shared by producers and the front-end: what an event is, which
types end a stream, and how an event object is turned into the one line of JSON that is
stored in Redis and sent, byte for byte, as the SSE ``data`` field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from broadcaster.core import names

TYPE_RE = names.EVENT_TYPE_RE
"""The event type grammar (``names.EVENT_TYPE_RE``, whole strings only); check types with
``names.is_event_type``."""
TERMINAL_TYPES = frozenset({"finish", "error", "abort"})

# Status of a generation once its stream ends with each terminal type.
STATUS_BY_TERMINAL = {"finish": "completed", "error": "failed", "abort": "cancelled"}


class InvalidEvent(ValueError):
    """An event object that does not follow the contract (bad or missing type, not JSON)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event: its seq, its type, its JSON object as compact UTF-8 bytes, and
    its history tag (empty for events stored before tags existed)."""

    seq: int
    type: str
    data: bytes
    tag: str = ""

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

    def json(self) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(self.data)
        return obj


MALFORMED_TEXT = "stored event %d of this stream is malformed"
"""The ``errorText`` a reader gets in place of a stored event that cannot be served as it
is (``malformed``)."""


def malformed(seq: int, tag: str = "") -> Event:
    """What a reader gets in place of the stored event ``seq`` when that event cannot be
    served as it is (a type or data that would split its SSE frame, a missing field,
    written by some program other than the append script): a terminal ``error``, the AI
    SDK's error part, with the event's id. Reading through it ends there, as at any
    terminal event; a reader that resumes after its id goes on with the next event."""
    text = (MALFORMED_TEXT % seq).encode()
    return Event(seq, "error", b'{"type":"error","errorText":"%s"}' % text, tag)


def dump_event(obj: Any) -> tuple[str, bytes]:
    """Validate one event object and return ``(type, compact JSON bytes)``.

    The JSON is on one line by construction (``json.dumps`` escapes control characters),
    so it can be the single ``data:`` line of an SSE frame. ``type`` is moved first, as
    the AI SDK's own stream parts have it.
    """
    if not isinstance(obj, dict):
        raise InvalidEvent("an event must be a JSON object")
    etype = obj.get("type")
    if not names.is_event_type(etype):
        raise InvalidEvent(
            f"an event needs a string 'type' matching {names.EVENT_TYPE_PATTERN}, got {etype!r}"[
                :200
            ]
        )
    ordered = {"type": etype, **{k: v for k, v in obj.items() if k != "type"}}
    try:
        data = json.dumps(
            ordered, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"event is not valid JSON: {exc}") from None
    return etype, data


def dump_batch(objs: list[Any]) -> list[tuple[str, bytes]]:
    """Validate a batch to be appended atomically: non-empty, terminal event only last."""
    if not objs:
        raise InvalidEvent("an event batch must not be empty")
    dumped = [dump_event(o) for o in objs]
    for etype, _ in dumped[:-1]:
        if etype in TERMINAL_TYPES:
            raise InvalidEvent(f"a terminal event ({etype!r}) may only be the last of a batch")
    return dumped


def iso_ms(epoch_ms: int) -> str:
    """A moment as events write it (``expiresAt``): ISO 8601 UTC with milliseconds, as
    JavaScript's ``Date.prototype.toISOString`` does: ``2026-11-26T15:04:05.123Z``."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"
