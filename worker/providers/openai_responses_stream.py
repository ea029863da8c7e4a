"""Responses API stream events -> the neutral vocabulary (``parts``), so that one mapping
(``worker.mapping``) turns this provider's stream into the contract's events.

Pure: ``ResponsesTranslator.feed`` takes each event's JSON and raises ``ResponseFailed``
on ``response.failed`` or ``error``; ``finished`` is False for a stream cut short.
Reasoning summaries are unsigned reasoning parts, output text and refusals text parts,
``function_call`` items tool parts named by ``call_id``, ``url_citation`` annotations
sources named by their place in the output (docs/api/generations.md has the
whole mapping). ``snapshot``/``resumed`` carry the translator over to a worker that
takes the generation over.
"""

from __future__ import annotations

from typing import Any

from worker.providers.openai_stream import url_source
from worker.providers.parts import (
    Delta,
    MessageEnd,
    MessageStart,
    ModelEvent,
    PartEnd,
    PartKind,
    PartStart,
    Stop,
    Usage,
)

__all__ = ["ResponseFailed", "ResponsesTranslator"]

_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content-filter"}

_KINDS: dict[str, PartKind] = {"thinking": "reasoning", "text": "text", "tool": "tool"}
"""The part kind of each kind a snapshot names (its words are kept: a snapshot written by
one version is read by the next, which takes the generation over)."""


class ResponseFailed(Exception):
    """The response failed (``response.failed``) or the stream carried an ``error``."""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _detail(error: dict[str, Any]) -> str:
    code = str(error.get("code") or error.get("type") or "")
    message = str(error.get("message") or "the response failed")
    return f"{code}: {message}" if code else message


class ResponsesTranslator:
    """One Responses stream as neutral events; see the module doc."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        self.response_id: str | None = state.get("id")
        self.model: str | None = state.get("model")
        self._next: int = int(state.get("next", 0))
        self._open: dict[str, list[Any]] = dict(state.get("open", {}))
        """Each open part by ``output_index:sub``: ``[index, kind, call_id, name, args]``
        (``kind``: thinking, text or tool; ``args``: arguments were streamed for the call)."""
        self._calls: bool = bool(state.get("calls"))
        self._refused: bool = bool(state.get("refused"))
        self.finished = False

    # ---- the state a successor resumes from

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.response_id,
            "model": self.model,
            "next": self._next,
            "open": self._open,
            "calls": self._calls,
            "refused": self._refused,
        }

    @classmethod
    def resumed(cls, state: dict[str, Any]) -> ResponsesTranslator:
        return cls(state)

    def reopen(self, tool_inputs: dict[str, str]) -> list[ModelEvent]:
        """The events that bring a fresh mapper to where this translator is: the
        message's start, each open part's start and, for an open call, the arguments
        already shown (``tool_inputs``, by call id). Their output is in the stream."""
        out: list[ModelEvent] = [self._message_start()]
        for index, kind, call_id, name, _ in sorted(self._open.values()):
            out.append(_start(index, kind, call_id, name))
            if kind == "tool" and tool_inputs.get(call_id):
                out.append(Delta(index, tool_inputs[call_id]))
        return out

    # ---- events

    def feed(self, event: dict[str, Any]) -> list[ModelEvent]:
        kind = str(event.get("type") or "")
        handler = _HANDLERS.get(kind)
        return handler(self, event) if handler is not None else []

    def _created(self, event: dict[str, Any]) -> list[ModelEvent]:
        response = _dict(event.get("response"))
        self.response_id = response.get("id") or self.response_id
        self.model = response.get("model") or self.model
        return [self._message_start()]

    def _message_start(self) -> MessageStart:
        return MessageStart(self.model)

    def _open_part(
        self, key: str, kind: str, call_id: str = "", name: str = ""
    ) -> list[ModelEvent]:
        if key in self._open:
            return []
        index = self._next
        self._next += 1
        self._open[key] = [index, kind, call_id, name, False]
        return [_start(index, kind, call_id, name)]

    def _end(self, key: str) -> list[ModelEvent]:
        part = self._open.pop(key, None)
        return [] if part is None else [PartEnd(part[0])]

    def _summary_added(self, event: dict[str, Any]) -> list[ModelEvent]:
        return self._open_part(_key(event, "summary_index"), "thinking")

    def _summary_delta(self, event: dict[str, Any]) -> list[ModelEvent]:
        out = self._summary_added(event)
        part = self._open[_key(event, "summary_index")]
        piece = event.get("delta")
        if isinstance(piece, str) and piece:
            out.append(Delta(part[0], piece))
        return out

    def _summary_done(self, event: dict[str, Any]) -> list[ModelEvent]:
        return self._end(_key(event, "summary_index"))

    def _part_added(self, event: dict[str, Any]) -> list[ModelEvent]:
        kind = _dict(event.get("part")).get("type")
        if kind not in ("output_text", "refusal"):
            return []
        self._refused = self._refused or kind == "refusal"
        return self._open_part(_key(event, "content_index"), "text")

    def _text_delta(self, event: dict[str, Any]) -> list[ModelEvent]:
        key = _key(event, "content_index")
        out = self._open_part(key, "text")
        self._refused = self._refused or event.get("type") == "response.refusal.delta"
        piece = event.get("delta")
        if isinstance(piece, str) and piece:
            out.append(Delta(self._open[key][0], piece))
        return out

    def _part_done(self, event: dict[str, Any]) -> list[ModelEvent]:
        return self._end(_key(event, "content_index"))

    def _item_added(self, event: dict[str, Any]) -> list[ModelEvent]:
        item = _dict(event.get("item"))
        if item.get("type") != "function_call":
            return []
        self._calls = True
        call_id = str(item.get("call_id") or item.get("id") or "")
        return self._open_part(_key(event, None), "tool", call_id, str(item.get("name") or ""))

    def _arguments_delta(self, event: dict[str, Any]) -> list[ModelEvent]:
        part = self._open.get(_key(event, None))
        piece = event.get("delta")
        if part is None or not isinstance(piece, str) or not piece:
            return []
        part[4] = True
        return [Delta(part[0], piece)]

    def _item_done(self, event: dict[str, Any]) -> list[ModelEvent]:
        item = _dict(event.get("item"))
        key = _key(event, None)
        part = self._open.get(key)
        if item.get("type") != "function_call" or part is None:
            return []
        out: list[ModelEvent] = []
        arguments = item.get("arguments")
        if not part[4] and isinstance(arguments, str) and arguments:
            out.append(Delta(part[0], arguments))  # sent whole, never streamed
        return out + self._end(key)

    def _annotation(self, event: dict[str, Any]) -> list[ModelEvent]:
        key = f"{_key(event, 'content_index')}:{event.get('annotation_index')}"
        source = url_source(key.replace(":", "."), _dict(event.get("annotation")))
        return [source] if source is not None else []

    def _completed(self, event: dict[str, Any]) -> list[ModelEvent]:
        response = _dict(event.get("response"))
        reason = _dict(response.get("incomplete_details")).get("reason")
        finish = _INCOMPLETE.get(str(reason), "length") if reason else "stop"
        if finish == "stop" and self._calls:
            finish = "tool-calls"
        elif finish == "stop" and self._refused:
            finish = "content-filter"
        out: list[ModelEvent] = []
        for key in sorted(self._open, key=lambda k: self._open[k][0]):
            out += self._end(key)
        used = responses_usage(_dict(response.get("usage")))
        self.finished = True
        return [*out, Stop(finish, str(reason) if reason else None, used), MessageEnd()]

    def _failed(self, event: dict[str, Any]) -> list[ModelEvent]:
        error = _dict(_dict(event.get("response")).get("error")) or event
        raise ResponseFailed(_detail(error))


def responses_usage(usage: dict[str, Any]) -> Usage:
    """A response's usage (``input_tokens``, all input, with
    ``input_tokens_details.cached_tokens``; ``output_tokens`` with
    ``output_tokens_details.reasoning_tokens``) as a ``Usage``."""
    inputs = _dict(usage.get("input_tokens_details"))
    outputs = _dict(usage.get("output_tokens_details"))
    return Usage(
        input=_int(usage.get("input_tokens")),
        output=_int(usage.get("output_tokens")),
        cache_read=_int(inputs.get("cached_tokens")),
        reasoning=_int(outputs.get("reasoning_tokens")),
    )


def _start(index: int, kind: str, call_id: str, name: str) -> PartStart:
    return PartStart(index, _KINDS[kind], call_id=call_id, name=name)


def _key(event: dict[str, Any], sub: str | None) -> str:
    return f"{event.get('output_index')}:{event.get(sub) if sub else 0}"


_HANDLERS = {
    "response.created": ResponsesTranslator._created,
    "response.reasoning_summary_part.added": ResponsesTranslator._summary_added,
    "response.reasoning_summary_text.delta": ResponsesTranslator._summary_delta,
    "response.reasoning_summary_part.done": ResponsesTranslator._summary_done,
    "response.content_part.added": ResponsesTranslator._part_added,
    "response.output_text.delta": ResponsesTranslator._text_delta,
    "response.refusal.delta": ResponsesTranslator._text_delta,
    "response.output_text.annotation.added": ResponsesTranslator._annotation,
    "response.content_part.done": ResponsesTranslator._part_done,
    "response.output_item.added": ResponsesTranslator._item_added,
    "response.function_call_arguments.delta": ResponsesTranslator._arguments_delta,
    "response.output_item.done": ResponsesTranslator._item_done,
    "response.completed": ResponsesTranslator._completed,
    "response.incomplete": ResponsesTranslator._completed,
    "response.failed": ResponsesTranslator._failed,
    "error": ResponsesTranslator._failed,
}
