"""A model call's stream, in the neutral vocabulary (``worker.providers.parts``) -> the
contract's event vocabulary (AI SDK UI stream parts). Pure: no I/O and no SDK import.

One ``EventMapper`` maps one model call (``feed`` each event; then ``text``, ``usage``,
``finish_reason``, ``model``). Part ids are per call: ``t<index>``, ``r<index>``, a
tool call's own id, a source's ``s<key>``. Reasoning carries what Anthropic needs to
accept it back, as the AI SDK's Anthropic provider emits it: a signature or redacted
data in ``providerMetadata.anthropic``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from worker.providers.parts import (
    Delta,
    MessageEnd,
    MessageStart,
    PartEnd,
    PartKind,
    PartStart,
    Passed,
    Signature,
    Source,
    Stop,
    Usage,
)

__all__ = ["PASSED_TYPES", "Event", "EventMapper", "merge_deltas"]

Event = dict[str, Any]

PASSED_TYPES: Final = frozenset(
    {"tool-output-available", "tool-output-error", "source-url", "source-document", "file"}
)
"""What ``Passed`` may carry, beside ``data-*`` parts (whoever passes those on keeps the
worker's own out: ``data-approval``, ``data-steer``, ...)."""


@dataclass
class _Part:
    kind: PartKind
    id: str
    tool_name: str = ""
    provider_executed: bool = False
    json_parts: list[str] = field(default_factory=list)


_DELTA_TYPES: Final[dict[str, tuple[str, str, str]]] = {
    # kind -> (event type, the key of the part's id, the key of the text)
    "text": ("text-delta", "id", "delta"),
    "reasoning": ("reasoning-delta", "id", "delta"),
    "tool": ("tool-input-delta", "toolCallId", "inputTextDelta"),
}


class EventMapper:
    """Maps the neutral events of one model call to contract events; see the module doc."""

    def __init__(self, message_id: str, id_prefix: str = "") -> None:
        self.message_id = message_id
        self.id_prefix = id_prefix
        """Before each text and reasoning part's id: a retried call's parts must not
        reuse the ids of the cut-off call's, which a viewer may still hold open."""
        self._parts: dict[int, _Part] = {}
        self._text: list[str] = []
        self.notes: list[str] = []
        """Anomalies met on the way (such as tool input that is not valid JSON)."""
        self.usage = Usage()
        """As last reported by the stream."""
        self.stop_reason: str | None = None
        """The provider's own word for why the call stopped, where it has one."""
        self.finish_reason = "other"
        self.model: str | None = None
        self.started = False
        """``MessageStart`` has been fed."""
        self.finished = False
        """``MessageEnd`` has been fed (and the ``finish`` event emitted)."""

    @property
    def text(self) -> str:
        """The text of the text parts so far, concatenated."""
        return "".join(self._text)

    def feed(self, event: object) -> list[Event]:
        """The contract events for one neutral event (often none)."""
        handler = _HANDLERS.get(type(event))
        return handler(self, event) if handler is not None else []

    def _message_start(self, event: MessageStart) -> list[Event]:
        self.model = event.model or self.model
        self.usage = event.usage
        self._parts.clear()
        events: list[Event] = []
        if not self.started:
            self.started = True
            events.append({"type": "start", "messageId": self.message_id})
        events.append({"type": "start-step"})
        return events

    def _start(self, event: PartStart) -> list[Event]:
        if event.kind == "tool":
            part = _Part("tool", event.call_id, event.name, event.provider_executed)
            self._parts[event.index] = part
            start: Event = {
                "type": "tool-input-start",
                "toolCallId": part.id,
                "toolName": part.tool_name,
            }
            if part.provider_executed:
                start["providerExecuted"] = True
            return [start]
        letter = "t" if event.kind == "text" else "r"
        part = _Part(event.kind, f"{self.id_prefix}{letter}{event.index}")
        self._parts[event.index] = part
        opened: Event = {"type": f"{event.kind}-start", "id": part.id}
        if event.redacted is not None:
            opened["providerMetadata"] = {"anthropic": {"redactedData": event.redacted}}
        if event.kind == "text" and event.text:
            return [opened, *self._delta(Delta(event.index, event.text))]
        return [opened]

    def _delta(self, event: Delta) -> list[Event]:
        part = self._parts.get(event.index)
        if part is None or not event.text:
            return []
        if part.kind == "text":
            self._text.append(event.text)
        elif part.kind == "tool":
            part.json_parts.append(event.text)
        kind, key, text_key = _DELTA_TYPES[part.kind]
        return [{"type": kind, key: part.id, text_key: event.text}]

    def _signature(self, event: Signature) -> list[Event]:
        part = self._parts.get(event.index)
        if part is None or part.kind != "reasoning" or not event.signature:
            return []
        meta = {"anthropic": {"signature": event.signature}}
        return [{"type": "reasoning-delta", "id": part.id, "delta": "", "providerMetadata": meta}]

    def _source(self, event: Source) -> list[Event]:
        source_id = f"{self.id_prefix}s{event.key}"
        if event.kind == "url":
            if not event.url:
                return []
            cited: Event = {"type": "source-url", "sourceId": source_id, "url": event.url}
            if event.title:
                cited["title"] = event.title
            return [cited]
        document: Event = {
            "type": "source-document",
            "sourceId": source_id,
            "mediaType": event.media_type or "text/plain",
            "title": event.title or "Document",
        }
        if event.filename:
            document["filename"] = event.filename
        return [document]

    def _end(self, event: PartEnd) -> list[Event]:
        part = self._parts.pop(event.index, None)
        if part is None:
            return []
        if part.kind != "tool":
            return [{"type": f"{part.kind}-end", "id": part.id}]
        available: Event = {
            "type": "tool-input-available",
            "toolCallId": part.id,
            "toolName": part.tool_name,
            "input": self._tool_input(part),
        }
        if part.provider_executed:
            available["providerExecuted"] = True
        return [available]

    def _tool_input(self, part: _Part) -> Any:
        source = "".join(part.json_parts)
        if not source.strip():
            return {}
        try:
            return json.loads(source)
        except ValueError as exc:
            self.notes.append(
                f"tool call {part.id} ({part.tool_name}): input is not valid JSON "
                f"({exc}); passed on as the raw string"
            )
            return source

    def _stop(self, event: Stop) -> list[Event]:
        self.finish_reason = event.finish
        self.stop_reason = event.reason
        if event.usage is not None:
            self.usage = event.usage
        return []

    def _message_end(self, _: MessageEnd) -> list[Event]:
        self.finished = True
        return [
            {"type": "finish-step"},
            {
                "type": "finish",
                "finishReason": self.finish_reason,
                "messageMetadata": {"model": self.model, "usage": self.usage.ai_sdk()},
            },
        ]

    def _passed(self, event: Passed) -> list[Event]:
        passed = event.chunk.get("type")
        if isinstance(passed, str) and (passed in PASSED_TYPES or passed.startswith("data-")):
            return [dict(event.chunk)]
        return []


_HANDLERS: dict[type, Callable[[EventMapper, Any], list[Event]]] = {
    MessageStart: EventMapper._message_start,
    PartStart: EventMapper._start,
    Delta: EventMapper._delta,
    Signature: EventMapper._signature,
    Source: EventMapper._source,
    PartEnd: EventMapper._end,
    Stop: EventMapper._stop,
    MessageEnd: EventMapper._message_end,
    Passed: EventMapper._passed,
}


_MERGEABLE: Final[dict[str, tuple[str, str]]] = {
    # type -> (the key that must match, the key whose strings are concatenated)
    "text-delta": ("id", "delta"),
    "reasoning-delta": ("id", "delta"),
    "tool-input-delta": ("toolCallId", "inputTextDelta"),
}


def _plain(event: Event, rule: tuple[str, str]) -> bool:
    """A delta with nothing but its type, block and text: one with more (such as the
    ``providerMetadata`` that carries a signature) is never merged, either way, so what it
    carries stays on its own event, in its place."""
    key, text_key = rule
    return event.keys() == {"type", key, text_key} and isinstance(event[text_key], str)


def merge_deltas(events: list[Event]) -> list[Event]:
    """Merge runs of adjacent deltas of the same block (``text-delta`` and
    ``reasoning-delta`` by ``id``, ``tool-input-delta`` by ``toolCallId``, carrying nothing
    else) into one event each, order kept; the input is not modified."""
    merged: list[Event] = []
    for event in events:
        kind = event.get("type")
        rule = _MERGEABLE.get(kind) if isinstance(kind, str) else None
        if rule is not None and merged:
            key, text_key = rule
            last = merged[-1]
            if (
                last.get("type") == kind
                and _plain(last, rule)
                and _plain(event, rule)
                and last[key] == event[key]
            ):
                last[text_key] += event[text_key]
                continue
        merged.append(dict(event))
    return merged
