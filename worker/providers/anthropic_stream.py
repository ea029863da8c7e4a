"""Anthropic's raw stream events -> the neutral vocabulary (``parts``), so that one mapping
(``worker.mapping``) turns this provider's stream into the contract's events.

Pure: no I/O and no SDK import. ``AnthropicReader.feed`` takes each raw event's wire
JSON; the SDK's derived events, ``ping`` and unknown kinds read as nothing, so a caller
may feed everything the SDK yields. The usage is summed as the AI SDK sums it: the input
is ``input_tokens`` (uncached alone) plus the cache's reads and writes, and
``message_delta``'s counts are totals that replace ``message_start``'s (an absent count
leaves the earlier one). A ``citations_delta`` is a ``Source``, as the AI SDK's Anthropic
provider reads it: a web search result a URL, a span of a given document a document.
"""

from __future__ import annotations

from typing import Any, Final

from worker.providers.parts import (
    Delta,
    MessageEnd,
    MessageStart,
    ModelEvent,
    PartEnd,
    PartKind,
    PartStart,
    Signature,
    Source,
    Stop,
    Usage,
)

__all__ = ["FINISH_REASONS", "REASONING", "AnthropicReader", "finish_reason", "usage_of"]

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


_TOOL_BLOCKS: Final = frozenset({"tool_use", "server_tool_use"})

REASONING: Final = "reasoning_tokens"
"""A count Anthropic does not send (it counts thinking in its output and says no more):
raw events from the fake provider, or an agent, may report their reasoning apart."""

_COUNTS: Final = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    REASONING,
)


def _counts(usage: Any) -> dict[str, int]:
    """The counts a raw event's ``usage`` object holds (those that are counts)."""
    got = usage if isinstance(usage, dict) else {}
    return {
        name: value
        for name in _COUNTS
        if isinstance(value := got.get(name), int) and not isinstance(value, bool) and value >= 0
    }


def usage_of(counts: dict[str, int]) -> Usage:
    """The usage raw counts say (a missing count is 0)."""
    read = counts.get("cache_read_input_tokens", 0)
    written = counts.get("cache_creation_input_tokens", 0)
    return Usage(
        input=counts.get("input_tokens", 0) + read + written,
        output=counts.get("output_tokens", 0),
        cache_read=read,
        cache_write=written,
        reasoning=counts.get(REASONING, 0),
    )


def _int(value: Any) -> int | None:
    """An int field of the wire JSON (absent and null are the same; bools are not ints)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


class AnthropicReader:
    """One Messages stream's raw events as neutral events; see the module doc."""

    def __init__(self) -> None:
        self._open: dict[int, PartKind] = {}
        self._counts: dict[str, int] = {}
        self._stop_reason: str | None = None
        self._cited = 0

    def feed(self, raw: dict[str, Any]) -> list[ModelEvent]:
        """The neutral events for one raw stream event (often none)."""
        kind = raw.get("type")
        if kind == "content_block_delta":
            delta = raw.get("delta")
            return self._delta(raw.get("index"), delta) if isinstance(delta, dict) else []
        if kind == "content_block_start":
            return self._start(raw.get("index"), _dict(raw.get("content_block")))
        if kind == "content_block_stop":
            index = _int(raw.get("index"))
            found = self._open.pop(index, None) if index is not None else None
            return [PartEnd(index)] if index is not None and found is not None else []
        if kind == "message_start":
            return [self._message_start(_dict(raw.get("message")))]
        if kind == "message_delta":
            return [self._message_delta(_dict(raw.get("delta")), _dict(raw.get("usage")))]
        if kind == "message_stop":
            return [MessageEnd()]
        return []

    def _message_start(self, message: dict[str, Any]) -> MessageStart:
        self._counts = _counts(message.get("usage"))
        self._open.clear()  # a message's blocks are numbered from 0
        self._cited = 0
        model = message.get("model")
        return MessageStart(model if isinstance(model, str) else None, usage_of(self._counts))

    def _message_delta(self, delta: dict[str, Any], usage: dict[str, Any]) -> Stop:
        stop_reason = delta.get("stop_reason")
        if isinstance(stop_reason, str):
            self._stop_reason = stop_reason
        self._counts |= _counts(usage)
        reason = self._stop_reason
        return Stop(finish_reason(reason), reason, usage_of(self._counts))

    def _start(self, index: Any, block: dict[str, Any]) -> list[ModelEvent]:
        if _int(index) is None:
            return []
        block_type = block.get("type")
        start: PartStart
        if block_type == "text":
            start = PartStart(index, "text", text=_str(block.get("text")))
        elif block_type == "thinking":
            start = PartStart(index, "reasoning")
        elif block_type == "redacted_thinking":
            start = PartStart(index, "reasoning", redacted=_str(block.get("data")))
        elif block_type in _TOOL_BLOCKS:
            call_id = block.get("id")
            start = PartStart(
                index,
                "tool",
                call_id=call_id if isinstance(call_id, str) else f"call{index}",
                name=_str(block.get("name")),
                provider_executed=block_type == "server_tool_use",
            )
        else:
            return []  # tool results and any other block: nothing to show
        self._open[index] = start.kind
        return [start]

    def _delta(self, index: Any, delta: dict[str, Any]) -> list[ModelEvent]:
        # The hot path (a delta per token): plain branches, no table.
        kind = self._open.get(index) if type(index) is int else None
        if kind is None:
            return []
        delta_type = delta.get("type")
        if delta_type == "text_delta":
            piece = delta.get("text") if kind == "text" else None
        elif delta_type == "thinking_delta":
            piece = delta.get("thinking") if kind == "reasoning" else None
        elif delta_type == "input_json_delta":
            piece = delta.get("partial_json") if kind == "tool" else None
        elif delta_type == "citations_delta":
            return self._citation(index, _dict(delta.get("citation")))
        elif delta_type == "signature_delta" and kind == "reasoning":
            signature = delta.get("signature")
            return [Signature(index, signature)] if isinstance(signature, str) and signature else []
        else:
            return []  # anything new
        return [Delta(index, piece)] if isinstance(piece, str) and piece else []

    def _citation(self, index: int, citation: dict[str, Any]) -> list[ModelEvent]:
        source = cited_source(f"{index}.{self._cited}", citation)
        if source is None:
            return []  # nothing usable: skipped
        self._cited += 1
        return [source]


_DOCUMENT_TYPES: Final[dict[str, str]] = {
    "char_location": "text/plain",
    "page_location": "application/pdf",
    "content_block_location": "text/plain",
}


def cited_source(key: str, citation: dict[str, Any]) -> Source | None:
    """The source one citation names, or None when it names none usable."""
    kind = citation.get("type")
    if kind in ("web_search_result_location", "search_result_location"):
        url = _str(citation.get("url")) or _str(citation.get("source"))
        if not url.startswith(("http://", "https://")):
            return None
        return Source("url", key, url=url, title=_str(citation.get("title")))
    media_type = _DOCUMENT_TYPES.get(kind) if isinstance(kind, str) else None
    if media_type is None:
        return None
    title = _str(citation.get("document_title")) or "Document"
    return Source("document", key, title=title, media_type=media_type)
