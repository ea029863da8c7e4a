"""The neutral vocabulary of a model call's stream: what every provider and agent maps its
own stream into, and the one mapping (``worker.mapping``) turns into the contract's
events. Pure: small frozen values, no I/O.

A call is ``MessageStart``, its parts (``PartStart``, ``Delta`` events, ``PartEnd``,
numbered by ``index``; ``Signature``, ``Source`` and ``Passed`` between), then ``Stop``
(the reason and ``Usage``) and ``MessageEnd``. ``Shown`` wraps what a lost attempt
already showed; ``ResumePoint`` marks where another worker can pick the call up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from broadcaster.core.events import Usage

PartKind = Literal["text", "reasoning", "tool"]


@dataclass(frozen=True, slots=True)
class MessageStart:
    """The call's answer begins: output may follow (before it, an error is retried)."""

    model: str | None = None
    usage: Usage = field(default_factory=Usage)
    """What is known of the usage at the start (the input, for Anthropic)."""


@dataclass(frozen=True, slots=True)
class PartStart:
    index: int
    kind: PartKind
    call_id: str = ""
    """A tool call's id."""
    name: str = ""
    """A tool call's tool."""
    provider_executed: bool = False
    """A tool the provider (or the agent) runs itself: the client has nothing to do."""
    redacted: str | None = None
    """Reasoning Anthropic keeps encrypted (``redacted_thinking``'s data)."""
    text: str = ""
    """Text the part starts with (the API starts its blocks empty)."""


@dataclass(frozen=True, slots=True)
class Delta:
    """More of a part: its text, its reasoning, or a fragment of a tool call's input JSON."""

    index: int
    text: str


@dataclass(frozen=True, slots=True)
class Signature:
    """What lets Anthropic accept a reasoning part back."""

    index: int
    signature: str


@dataclass(frozen=True, slots=True)
class Source:
    """A source the answer cites: a web page (``url``) or a document the call was given."""

    kind: Literal["url", "document"]
    key: str
    """Unique within the call and fixed by the stream's own position (a citation's block
    and number), so a worker that takes the call over names it the same."""
    url: str = ""
    title: str = ""
    media_type: str = ""
    filename: str = ""


@dataclass(frozen=True, slots=True)
class PartEnd:
    index: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Why the call stopped, and its usage so far (totals: they replace, never add)."""

    finish: str
    """The contract's ``finishReason`` (or ``worker.sessions.GOES_ON``)."""
    reason: str | None = None
    """The provider's own word for it, where it has one (traces report it)."""
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class MessageEnd:
    """The call's answer is whole."""


@dataclass(frozen=True, slots=True)
class Passed:
    """A contract event the stream has no part for, passed on as it is."""

    chunk: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Shown:
    """An event a lost attempt already showed: it only brings the mapping up to date."""

    event: ModelEvent


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """The stream's metadata that lets another worker pick the call up after the events
    before this one (``RESUME_FIELD``)."""

    meta: dict[str, str]


ModelEvent = (
    MessageStart
    | PartStart
    | Delta
    | Signature
    | Source
    | PartEnd
    | Stop
    | MessageEnd
    | Passed
    | Shown
    | ResumePoint
)


__all__ = [
    "Delta",
    "MessageEnd",
    "MessageStart",
    "ModelEvent",
    "PartEnd",
    "PartKind",
    "PartStart",
    "Passed",
    "ResumePoint",
    "Shown",
    "Signature",
    "Source",
    "Stop",
    "Usage",
]
