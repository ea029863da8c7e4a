"""Chat Completions stream chunks -> the neutral vocabulary (``parts``), so that one
mapping (``worker.mapping``) turns every provider's stream into the contract's events.

Pure: ``ChunkTranslator.feed`` each chunk's JSON, then ``end()`` (``IncompleteStream``
when no ``finish_reason`` came). Tool calls are buffered by ``index`` and their input
parsed only at the end (partial JSON can parse by coincidence, as the AI SDK knows);
``stop`` after tool calls is ``tool-calls``; a ``url_citation`` annotation is a
``Source``. The whole mapping, reasoning fields and usage included:
docs/api/generations.md, "The ``openai`` provider".
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.providers.parts import (
    Delta,
    MessageEnd,
    MessageStart,
    ModelEvent,
    PartEnd,
    PartKind,
    PartStart,
    Source,
    Stop,
    Usage,
)

__all__ = ["FINISH_REASONS", "ChunkTranslator", "IncompleteStream", "chat_usage", "url_source"]

FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
    "content_filter": "content-filter",
}
"""The contract's ``finishReason`` for each ``finish_reason`` (any other: ``other``)."""


class IncompleteStream(Exception):
    """The stream ended without a ``finish_reason``, or with a tool call never named."""


def _call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass
class _Call:
    id: str | None = None
    name: str | None = None
    buffered: list[str] = field(default_factory=list)
    index: int | None = None  # the part's, once started


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class ChunkTranslator:
    """One Chat Completions stream as neutral events; see the module doc."""

    def __init__(self, new_call_id: Callable[[], str] = _call_id) -> None:
        self._new_call_id = new_call_id
        self._parts = itertools.count()
        self._started = False
        self._open: tuple[PartKind, int] | None = None  # the reasoning or text part open
        self._calls: dict[Any, _Call] = {}
        self._finish: str | None = None
        self._refused = False
        self._usage = Usage()
        self._cited = 0

    def feed(self, chunk: dict[str, Any]) -> list[ModelEvent]:
        out: list[ModelEvent] = []
        if not self._started:
            self._started = True
            model = chunk.get("model")
            out.append(MessageStart(model if isinstance(model, str) else None))
        usage = _dict(chunk.get("usage"))
        if usage:
            self._usage = chat_usage(usage)
        for raw_choice in chunk.get("choices") or []:
            choice = _dict(raw_choice)
            if choice.get("index", 0) != 0:
                continue  # one answer is asked for (no ``n``)
            out += self._delta(_dict(choice.get("delta")))
            if _str(choice.get("finish_reason")):
                self._finish = choice["finish_reason"]
        return out

    def _delta(self, delta: dict[str, Any]) -> list[ModelEvent]:
        out: list[ModelEvent] = []
        thought = _str(delta.get("reasoning_content")) or _str(delta.get("reasoning"))
        if thought:
            out += self._switch_to("reasoning")
            out.append(Delta(self._index(), thought))
        for key in ("content", "refusal"):
            if piece := _str(delta.get(key)):
                self._refused = self._refused or key == "refusal"
                out += self._switch_to("text")
                out.append(Delta(self._index(), piece))
        annotations = delta.get("annotations")
        if isinstance(annotations, list):
            out += self._annotations(annotations)
        calls = delta.get("tool_calls")
        if isinstance(calls, list) and calls:
            out += self._switch_to(None)
            for call in calls:
                out += self._tool_call(_dict(call))
        return out

    def _annotations(self, annotations: list[Any]) -> list[ModelEvent]:
        out: list[ModelEvent] = []
        for annotation in annotations:
            source = url_source(str(self._cited), _dict(annotation))
            if source is not None:
                self._cited += 1
                out.append(source)
        return out

    def _index(self) -> int:
        assert self._open is not None
        return self._open[1]

    def _switch_to(self, kind: PartKind | None) -> list[ModelEvent]:
        if self._open is not None and self._open[0] == kind:
            return []
        out: list[ModelEvent] = []
        if self._open is not None:
            out.append(PartEnd(self._open[1]))
            self._open = None
        if kind is not None:
            index = next(self._parts)
            self._open = (kind, index)
            out.append(PartStart(index, kind))
        return out

    def _tool_call(self, delta: dict[str, Any]) -> list[ModelEvent]:
        key = delta.get("index")
        if key is None:  # no index: its id, else the call in progress
            key = _str(delta.get("id")) or next(reversed(self._calls), 0)
        call = self._calls.setdefault(key, _Call())
        function = _dict(delta.get("function"))
        call.id = call.id or _str(delta.get("id"))
        call.name = call.name or _str(function.get("name"))
        if arguments := _str(function.get("arguments")):
            call.buffered.append(arguments)
        if call.name is None:
            return []  # wait for the name
        out: list[ModelEvent] = []
        if call.index is None:
            call.index = next(self._parts)
            call.id = call.id or self._new_call_id()
            out.append(PartStart(call.index, "tool", call_id=call.id, name=call.name))
        out += [Delta(call.index, piece) for piece in call.buffered]
        call.buffered.clear()
        return out

    def end(self) -> list[ModelEvent]:
        """The events that close the message, once the stream has ended."""
        if self._finish is None:
            raise IncompleteStream("the model stream ended without a finish_reason")
        if any(call.name is None for call in self._calls.values()):
            raise IncompleteStream("the model stream had a tool call without a name")
        out = self._switch_to(None)
        out += [
            PartEnd(call.index)
            for call in sorted(self._calls.values(), key=lambda c: c.index or 0)
            if call.index is not None
        ]
        finish = FINISH_REASONS.get(self._finish, "other")
        if finish == "stop" and self._calls:
            finish = "tool-calls"
        elif finish == "stop" and self._refused:
            finish = "content-filter"
        out += [Stop(finish, self._finish, self._usage), MessageEnd()]
        return out


def chat_usage(usage: dict[str, Any]) -> Usage:
    """A Chat Completions usage object (``prompt_tokens``, all input, with
    ``prompt_tokens_details.cached_tokens``; ``completion_tokens`` with
    ``completion_tokens_details.reasoning_tokens``) as a ``Usage``; what a server leaves
    out (many do) is 0."""
    prompt = _dict(usage.get("prompt_tokens_details"))
    completion = _dict(usage.get("completion_tokens_details"))
    return Usage(
        input=_count(usage.get("prompt_tokens")),
        output=_count(usage.get("completion_tokens")),
        cache_read=_count(prompt.get("cached_tokens")),
        reasoning=_count(completion.get("reasoning_tokens")),
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def url_source(key: str, annotation: dict[str, Any]) -> Source | None:
    """The source a ``url_citation`` annotation names (Chat Completions nest its fields
    under ``url_citation``; the Responses API does not), or None."""
    if annotation.get("type") != "url_citation":
        return None
    fields = _dict(annotation.get("url_citation")) or annotation
    url = _str(fields.get("url"))
    if url is None:
        return None
    return Source("url", key, url=url, title=_str(fields.get("title")) or "")
