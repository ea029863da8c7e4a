"""Anthropic's raw stream events -> the contract's event vocabulary (AI SDK UI stream parts).

Pure: no I/O and no SDK import. The input is the wire JSON of each raw stream event, which
is what ``event.model_dump()`` gives for the SDK's raw events (``message_start``,
``content_block_start``, ``content_block_delta``, ``content_block_stop``,
``message_delta``, ``message_stop``). The SDK's derived convenience events (``text``,
``thinking``, ``input_json``, ``signature``, ``citation``), ``ping`` and unknown types map
to nothing, so a caller may feed everything the SDK yields.

One :class:`EventMapper` maps one model call (one Messages request)::

    mapper = EventMapper(message_id)
    for raw in raw_events:
        for event in mapper.feed(raw):
            publish(event)
    mapper.text, mapper.usage, mapper.stop_reason, mapper.model

``mapper.usage`` is the call's ``Usage``: the raw events' counts (Anthropic's
``input_tokens``, the uncached input, with the cache's reads and writes beside it; the
reasoning tokens a provider reports apart), as ``worker.usage.of_raw`` sums them.

Block ids are per call: ``t<index>`` for text, ``r<index>`` for thinking, and the tool
call's own id for tool use.

Thinking carries what Anthropic needs to accept it back, as the AI SDK's Anthropic
provider emits it: a ``signature_delta`` becomes a ``reasoning-delta`` with an empty
``delta`` and ``providerMetadata: {"anthropic": {"signature"}}``; a ``redacted_thinking``
block becomes ``reasoning-start`` with ``providerMetadata: {"anthropic":
{"redactedData"}}`` and its ``reasoning-end``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from worker.usage import Usage, of_raw, raw_counts

__all__ = ["FINISH_REASONS", "Event", "EventMapper", "finish_reason", "merge_deltas"]

Event = dict[str, Any]

FINISH_REASONS: Final[dict[str, str]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool-calls",
    "refusal": "content-filter",
    "pause_turn": "other",
}


def finish_reason(stop_reason: str | None) -> str:
    """The contract's ``finishReason`` for an Anthropic ``stop_reason``."""
    if stop_reason is None:
        return "other"
    return FINISH_REASONS.get(stop_reason, "other")


PASSED_ON: Final = "ui_chunk"
"""A raw event of this type carries, under ``chunk``, a contract event that Anthropic's
stream has no form for (an agent's own tool output, a data part): passed on as it is."""

PASSED_TYPES: Final = frozenset(
    {"tool-output-available", "tool-output-error", "source-url", "source-document", "file"}
)
"""What ``PASSED_ON`` may carry, beside ``data-*`` parts (whoever passes those on keeps
the worker's own out: ``data-approval``, ``data-steer``, ...)."""

_Kind = Literal["text", "reasoning", "tool"]
_TOOL_BLOCKS: Final = frozenset({"tool_use", "server_tool_use"})


@dataclass
class _Block:
    kind: _Kind
    id: str
    tool_name: str = ""
    provider_executed: bool = False
    json_parts: list[str] = field(default_factory=list)


def _int(value: Any) -> int | None:
    """An int field of the wire JSON (absent and null are the same; bools are not ints)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class ContentBlocks:
    """The content blocks of one model call, by index: text, thinking and tool use, from
    their start through their deltas to their stop, as contract events."""

    def __init__(self, id_prefix: str = "") -> None:
        self.id_prefix = id_prefix
        """Before each text and reasoning part's id: a retried call's parts must not
        reuse the ids of the cut-off call's, which a viewer may still hold open."""
        self._open: dict[int, _Block] = {}
        self._text: list[str] = []
        self.notes: list[str] = []
        """Anomalies met on the way (such as tool input that is not valid JSON)."""

    @property
    def text(self) -> str:
        """The text of the text blocks so far, concatenated."""
        return "".join(self._text)

    def new_message(self) -> None:
        """A message starts: its blocks are numbered from 0 again."""
        self._open.clear()

    def start(self, index: Any, block: dict[str, Any]) -> list[Event]:
        if _int(index) is None:
            return []
        block_type = block.get("type")
        if block_type == "text":
            part_id = f"{self.id_prefix}t{index}"
            self._open[index] = _Block("text", part_id)
            initial = block.get("text")
            events: list[Event] = [{"type": "text-start", "id": part_id}]
            if isinstance(initial, str) and initial:  # the API starts blocks empty; be safe
                events.extend(self._text_delta(part_id, initial))
            return events
        if block_type == "thinking":
            self._open[index] = _Block("reasoning", f"{self.id_prefix}r{index}")
            return [{"type": "reasoning-start", "id": f"{self.id_prefix}r{index}"}]
        if block_type == "redacted_thinking":
            part_id = f"{self.id_prefix}r{index}"
            self._open[index] = _Block("reasoning", part_id)
            data = block.get("data")
            redacted = {"anthropic": {"redactedData": data if isinstance(data, str) else ""}}
            return [{"type": "reasoning-start", "id": part_id, "providerMetadata": redacted}]
        if block_type in _TOOL_BLOCKS:
            return self._tool_start(index, block)
        return []  # tool results and any other block: nothing to show

    def _tool_start(self, index: int, block: dict[str, Any]) -> list[Event]:
        call_id = block.get("id")
        name = block.get("name")
        tool = _Block(
            "tool",
            call_id if isinstance(call_id, str) else f"call{index}",
            tool_name=name if isinstance(name, str) else "",
            provider_executed=block.get("type") == "server_tool_use",
        )
        self._open[index] = tool
        start: Event = {
            "type": "tool-input-start",
            "toolCallId": tool.id,
            "toolName": tool.tool_name,
        }
        if tool.provider_executed:
            start["providerExecuted"] = True
        return [start]

    def _text_delta(self, block_id: str, delta: str) -> list[Event]:
        self._text.append(delta)
        return [{"type": "text-delta", "id": block_id, "delta": delta}]

    def delta(self, index: Any, delta: dict[str, Any]) -> list[Event]:
        block = self._open.get(index) if _int(index) is not None else None
        if block is None:
            return []
        delta_type = delta.get("type")
        if block.kind == "text" and delta_type == "text_delta":
            piece = delta.get("text")
            return self._text_delta(block.id, piece) if isinstance(piece, str) and piece else []
        if block.kind == "reasoning" and delta_type == "thinking_delta":
            piece = delta.get("thinking")
            if isinstance(piece, str) and piece:
                return [{"type": "reasoning-delta", "id": block.id, "delta": piece}]
            return []
        if block.kind == "reasoning" and delta_type == "signature_delta":
            signature = delta.get("signature")
            if not isinstance(signature, str) or not signature:
                return []
            return [
                {
                    "type": "reasoning-delta",
                    "id": block.id,
                    "delta": "",
                    "providerMetadata": {"anthropic": {"signature": signature}},
                }
            ]
        if block.kind == "tool" and delta_type == "input_json_delta":
            piece = delta.get("partial_json")
            if isinstance(piece, str) and piece:
                block.json_parts.append(piece)
                return [
                    {"type": "tool-input-delta", "toolCallId": block.id, "inputTextDelta": piece}
                ]
            return []
        return []  # citations_delta and anything new

    def stop(self, index: Any) -> list[Event]:
        block = self._open.pop(index, None) if _int(index) is not None else None
        if block is None:
            return []
        if block.kind == "text":
            return [{"type": "text-end", "id": block.id}]
        if block.kind == "reasoning":
            return [{"type": "reasoning-end", "id": block.id}]
        available: Event = {
            "type": "tool-input-available",
            "toolCallId": block.id,
            "toolName": block.tool_name,
            "input": self._tool_input(block),
        }
        if block.provider_executed:
            available["providerExecuted"] = True
        return [available]

    def _tool_input(self, block: _Block) -> Any:
        source = "".join(block.json_parts)
        if not source.strip():
            return {}
        try:
            return json.loads(source)
        except ValueError as exc:
            self.notes.append(
                f"tool call {block.id} ({block.tool_name}): input is not valid JSON "
                f"({exc}); passed on as the raw string"
            )
            return source


class EventMapper:
    """Maps the raw events of one Messages stream to contract events; see the module doc.

    It keeps the message: its start, usage, stop reason and finish. The content blocks
    inside it are ``ContentBlocks``'s."""

    def __init__(self, message_id: str, id_prefix: str = "") -> None:
        self.message_id = message_id
        self._blocks = ContentBlocks(id_prefix)
        self._counts: dict[str, int] = {}
        self._stop_reason: str | None = None
        self._model: str | None = None
        self._started = False
        self._finished = False

    # ---- results

    @property
    def text(self) -> str:
        """The text of the text blocks so far, concatenated."""
        return self._blocks.text

    @property
    def notes(self) -> list[str]:
        """Anomalies met on the way (such as tool input that is not valid JSON)."""
        return self._blocks.notes

    @property
    def usage(self) -> Usage:
        """The call's usage as last reported by the stream (``worker.usage.of_raw``)."""
        return of_raw(self._counts)

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    @property
    def finish_reason(self) -> str:
        return finish_reason(self._stop_reason)

    @property
    def model(self) -> str | None:
        return self._model

    @property
    def started(self) -> bool:
        """``message_start`` has been fed."""
        return self._started

    @property
    def finished(self) -> bool:
        """``message_stop`` has been fed (and the ``finish`` event emitted)."""
        return self._finished

    # ---- mapping

    def feed(self, raw: dict[str, Any]) -> list[Event]:
        """The contract events for one raw stream event (often none)."""
        kind = raw.get("type")
        if kind == "message_start":
            return self._message_start(_dict(raw.get("message")))
        if kind == "content_block_start":
            return self._blocks.start(raw.get("index"), _dict(raw.get("content_block")))
        if kind == "content_block_delta":
            return self._blocks.delta(raw.get("index"), _dict(raw.get("delta")))
        if kind == "content_block_stop":
            return self._blocks.stop(raw.get("index"))
        if kind == "message_delta":
            self._message_delta(_dict(raw.get("delta")), _dict(raw.get("usage")))
            return []
        if kind == "message_stop":
            return self._message_stop()
        if kind == PASSED_ON:
            chunk = raw.get("chunk")
            if not isinstance(chunk, dict):
                return []
            passed = chunk.get("type")
            if isinstance(passed, str) and (passed in PASSED_TYPES or passed.startswith("data-")):
                return [dict(chunk)]
        return []  # ping, error (the SDK raises on it), derived and unknown events

    def _message_start(self, message: dict[str, Any]) -> list[Event]:
        model = message.get("model")
        if isinstance(model, str):
            self._model = model
        self._counts = raw_counts(message.get("usage"))
        self._blocks.new_message()
        events: list[Event] = []
        if not self._started:
            self._started = True
            events.append({"type": "start", "messageId": self.message_id})
        events.append({"type": "start-step"})
        return events

    def _message_delta(self, delta: dict[str, Any], usage: dict[str, Any]) -> None:
        stop_reason = delta.get("stop_reason")
        if isinstance(stop_reason, str):
            self._stop_reason = stop_reason
        # Counts on message_delta are cumulative totals: they replace, never add; an absent
        # (or null) count leaves message_start's value in place.
        self._counts |= raw_counts(usage)

    def _message_stop(self) -> list[Event]:
        self._finished = True
        return [
            {"type": "finish-step"},
            {
                "type": "finish",
                "finishReason": self.finish_reason,
                "messageMetadata": {"model": self._model, "usage": self.usage.ai_sdk()},
            },
        ]


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
    """Merge runs of adjacent deltas of the same block into one event each.

    Adjacent ``text-delta`` (or ``reasoning-delta``) events with the same ``id``, and
    adjacent ``tool-input-delta`` events with the same ``toolCallId``, become one event whose
    text is their concatenation, as long as both carry nothing else. Everything else, and
    the order, is kept. The input list and its dicts are not modified: the result holds
    shallow copies.
    """
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
