"""AG-UI events in: an agent that speaks AG-UI, as the AI SDK's UI message chunks that
every reader of a stream gets (AG-UI again through ``projection``). Pure, no I/O.

``ChunkMapper.feed`` maps one event to chunks; what it remembers (the run, the step,
open parts, tool calls so far) is folded from the chunks it made (``observe``), so its
state is rebuilt from a stream's log alone. ``ui_chunks`` does the same for an iterator
of events (dicts, ``ag-ui-protocol`` models or SSE text). The event-by-event mapping is
tabled in docs/agui.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from broadcaster.core import events, names

Chunk = dict[str, Any]
AgEvent = dict[str, Any]

MAX_EVENT_BYTES = 1024 * 1024
"""The largest AG-UI event read from SSE text (a line longer is refused)."""
MAX_ARGS_CHARS = MAX_EVENT_BYTES
"""The longest arguments of a tool call parsed at its end; longer ones end the call with
``tool-input-error`` (they are never parsed, on the event loop or elsewhere)."""


class AgUiInvalid(ValueError):
    """An AG-UI event this mapping cannot read (no type, a field of the wrong kind)."""


@dataclass(slots=True)
class Call:
    name: str
    args: str = ""


@dataclass(slots=True)
class InState:
    """What the chunks so far leave open."""

    started: bool = False
    ended: bool = False
    step: bool = False
    texts: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[str, Call] = field(default_factory=dict)
    chunked_text: str | None = None
    chunked_call: str | None = None
    chunked_reasoning: str | None = None

    def copy(self) -> InState:
        return InState(
            self.started,
            self.ended,
            self.step,
            list(self.texts),
            list(self.reasoning),
            {k: Call(c.name, c.args) for k, c in self.calls.items()},
            self.chunked_text,
            self.chunked_call,
            self.chunked_reasoning,
        )


class ChunkMapper:
    """AG-UI events, in order, to the AI SDK's UI message chunks."""

    def __init__(self, state: InState | None = None) -> None:
        self.state = state or InState()
        self._thinking = 0

    def copy(self) -> ChunkMapper:
        return ChunkMapper(self.state.copy())

    def observe(self, chunk: Chunk) -> None:
        """Fold a chunk (one this mapper made, or one read back from the log)."""
        s = self.state
        kind = chunk.get("type")
        cid = str(chunk.get("id"))
        if kind == "start":
            s.started = True
        elif kind in ("finish", "abort", "error"):
            s.ended = True
        elif kind in ("start-step", "finish-step"):
            s.step = kind == "start-step"
        elif kind == "text-start":
            s.texts.append(cid)
        elif kind == "text-end":
            s.texts = [t for t in s.texts if t != cid]
        elif kind == "reasoning-start":
            s.reasoning.append(cid)
        elif kind == "reasoning-end":
            s.reasoning = [r for r in s.reasoning if r != cid]
        elif kind == "tool-input-start":
            s.calls.setdefault(str(chunk.get("toolCallId")), Call(str(chunk.get("toolName"))))
        elif kind == "tool-input-delta":
            call = s.calls.get(str(chunk.get("toolCallId")))
            if call is not None:
                call.args += str(chunk.get("inputTextDelta", ""))
        elif kind in ("tool-input-available", "tool-input-error"):
            s.calls.pop(str(chunk.get("toolCallId")), None)

    def feed(self, event: AgEvent) -> list[Chunk]:
        """The chunks of one AG-UI event (none once the run ended)."""
        kind = event.get("type")
        if not names.is_agui_event_type(kind):
            raise AgUiInvalid(f"an AG-UI event's type matches {names.AGUI_EVENT_TYPE_PATTERN}")
        if self.state.ended:
            return []
        out: list[Chunk] = []
        if not self.state.started and kind != "RUN_ERROR":
            out.append({"type": "start"})
            self.observe(out[0])
        for step in (self._chunked, self._map):  # the second sees what the first closed
            made = step(kind, event)
            for chunk in made:
                self.observe(chunk)
            out += made
        return out

    def close(self) -> list[Chunk]:
        """The end of events that stopped before ``RUN_FINISHED`` or ``RUN_ERROR``."""
        if self.state.ended:
            return []
        made = [{"type": "error", "errorText": "the AG-UI run ended without RUN_FINISHED"}]
        for chunk in made:
            self.observe(chunk)
        return made

    def _chunked(self, kind: str, event: AgEvent) -> list[Chunk]:
        """Ends what ``*_CHUNK`` events left open, when another kind of event comes (or a
        chunk of another message or call)."""
        s, out = self.state, []
        text, call, reason = s.chunked_text, s.chunked_call, s.chunked_reasoning
        if text and (kind != "TEXT_MESSAGE_CHUNK" or event.get("messageId") not in (None, text)):
            out += self._text_end(text)
            s.chunked_text = None
        if call and (kind != "TOOL_CALL_CHUNK" or event.get("toolCallId") not in (None, call)):
            out += self._call_end(call)
            s.chunked_call = None
        same = event.get("messageId") in (None, reason)
        if reason and (kind != "REASONING_MESSAGE_CHUNK" or not same):
            out += self._reasoning_end(reason)
            s.chunked_reasoning = None
        return out

    def _map(self, kind: str, e: AgEvent) -> list[Chunk]:
        handler = _HANDLERS.get(kind)
        return handler(self, e) if handler is not None else []

    # The run and its steps.

    def _run_started(self, e: AgEvent) -> list[Chunk]:
        return []  # ``feed`` starts the stream at the first event of any kind

    def _closing(self) -> list[Chunk]:
        s, out = self.state, []
        for call in list(s.calls):
            out += self._call_end(call)
        for text in list(s.texts):
            out.append({"type": "text-end", "id": text})
        for reason in list(s.reasoning):
            out.append({"type": "reasoning-end", "id": reason})
        if s.step:
            out.append({"type": "finish-step"})
        return out

    def _run_finished(self, e: AgEvent) -> list[Chunk]:
        outcome = e.get("outcome")
        kind = outcome.get("type") if isinstance(outcome, dict) else None
        out = self._closing()
        if kind == "interrupt" and isinstance(outcome, dict):
            out.append({"type": "data-agui-interrupt", "data": outcome.get("interrupts", [])})
        out.append({"type": "abort" if kind == "cancelled" else "finish"})
        return out

    def _run_error(self, e: AgEvent) -> list[Chunk]:
        message = e.get("message")
        return [{"type": "error", "errorText": str(message or "the AG-UI run failed")}]

    def _step_started(self, e: AgEvent) -> list[Chunk]:
        return [*([{"type": "finish-step"}] if self.state.step else []), {"type": "start-step"}]

    def _step_finished(self, e: AgEvent) -> list[Chunk]:
        return [{"type": "finish-step"}] if self.state.step else []

    # Text.

    def _text_start(self, e: AgEvent) -> list[Chunk]:
        mid = _text(e, "messageId")
        return [] if mid in self.state.texts else [{"type": "text-start", "id": mid}]

    def _text_content(self, e: AgEvent) -> list[Chunk]:
        mid, delta = _text(e, "messageId"), _text(e, "delta", empty=True)
        out = self._text_start(e)
        return [*out, {"type": "text-delta", "id": mid, "delta": delta}] if delta else out

    def _text_end(self, mid: str) -> list[Chunk]:
        return [{"type": "text-end", "id": mid}] if mid in self.state.texts else []

    def _text_ended(self, e: AgEvent) -> list[Chunk]:
        return self._text_end(_text(e, "messageId"))

    def _text_chunk(self, e: AgEvent) -> list[Chunk]:
        mid = e.get("messageId") or self.state.chunked_text
        if not isinstance(mid, str) or not mid:
            raise AgUiInvalid("TEXT_MESSAGE_CHUNK: the first chunk of a message names it")
        self.state.chunked_text = mid
        return self._text_content({"messageId": mid, "delta": e.get("delta") or ""})

    # Reasoning.

    def _reasoning_start(self, e: AgEvent) -> list[Chunk]:
        mid = _text(e, "messageId")
        return [] if mid in self.state.reasoning else [{"type": "reasoning-start", "id": mid}]

    def _reasoning_content(self, e: AgEvent) -> list[Chunk]:
        mid, delta = _text(e, "messageId"), _text(e, "delta", empty=True)
        out = self._reasoning_start(e)
        return [*out, {"type": "reasoning-delta", "id": mid, "delta": delta}] if delta else out

    def _reasoning_end(self, mid: str) -> list[Chunk]:
        return [{"type": "reasoning-end", "id": mid}] if mid in self.state.reasoning else []

    def _reasoning_ended(self, e: AgEvent) -> list[Chunk]:
        return self._reasoning_end(_text(e, "messageId"))

    def _reasoning_chunk(self, e: AgEvent) -> list[Chunk]:
        mid = e.get("messageId") or self.state.chunked_reasoning
        if not isinstance(mid, str) or not mid:
            raise AgUiInvalid("REASONING_MESSAGE_CHUNK: the first chunk of a message names it")
        self.state.chunked_reasoning = mid
        return self._reasoning_content({"messageId": mid, "delta": e.get("delta") or ""})

    def _thinking_start(self, e: AgEvent) -> list[Chunk]:
        self._thinking += 1
        return self._reasoning_start({"messageId": self._thinking_id()})

    def _thinking_content(self, e: AgEvent) -> list[Chunk]:
        return self._reasoning_content({"messageId": self._thinking_id(), "delta": e.get("delta")})

    def _thinking_end(self, e: AgEvent) -> list[Chunk]:
        return self._reasoning_end(self._thinking_id())

    def _thinking_id(self) -> str:
        return self.state.reasoning[-1] if self.state.reasoning else f"thinking-{self._thinking}"

    def _encrypted(self, e: AgEvent) -> list[Chunk]:
        entity = e.get("entityId")
        value = _text(e, "encryptedValue")
        if entity not in self.state.reasoning:
            return []
        meta = {"agui": {"encryptedValue": value}}
        return [{"type": "reasoning-delta", "id": entity, "delta": "", "providerMetadata": meta}]

    # Tool calls.

    def _call_start(self, e: AgEvent) -> list[Chunk]:
        call, name = _text(e, "toolCallId"), _text(e, "toolCallName")
        if call in self.state.calls:
            return []
        return [{"type": "tool-input-start", "toolCallId": call, "toolName": name}]

    def _call_args(self, e: AgEvent) -> list[Chunk]:
        call, delta = _text(e, "toolCallId"), _text(e, "delta", empty=True)
        if call not in self.state.calls or not delta:
            return []
        return [{"type": "tool-input-delta", "toolCallId": call, "inputTextDelta": delta}]

    def _call_end(self, call: str) -> list[Chunk]:
        found = self.state.calls.get(call)
        if found is None:
            return []
        head = {"toolCallId": call, "toolName": found.name}
        if len(found.args) > MAX_ARGS_CHARS:
            text = f"the tool call's arguments are over {MAX_ARGS_CHARS} characters"
            return [{"type": "tool-input-error", **head, "input": "", "errorText": text}]
        try:
            parsed = events.loads_strict(found.args) if found.args.strip() else {}
        except events.InvalidJson as exc:
            # Ended here, with its reason: a call whose arguments no parser can take
            # must not make every later event of the stream fail at its end.
            text = f"the tool call's arguments are not JSON: {exc}"[:300]
            return [{"type": "tool-input-error", **head, "input": found.args, "errorText": text}]
        return [{"type": "tool-input-available", **head, "input": parsed}]

    def _call_ended(self, e: AgEvent) -> list[Chunk]:
        return self._call_end(_text(e, "toolCallId"))

    def _call_chunk(self, e: AgEvent) -> list[Chunk]:
        call = e.get("toolCallId") or self.state.chunked_call
        if not isinstance(call, str) or not call:
            raise AgUiInvalid("TOOL_CALL_CHUNK: the first chunk of a call names it")
        out: list[Chunk] = []
        if call not in self.state.calls:
            name = e.get("toolCallName")
            if not isinstance(name, str) or not name:
                raise AgUiInvalid("TOOL_CALL_CHUNK: the first chunk of a call names its tool")
            out = self._call_start({"toolCallId": call, "toolCallName": name})
            for chunk in out:
                self.observe(chunk)
        self.state.chunked_call = call
        return out + self._call_args({"toolCallId": call, "delta": e.get("delta") or ""})

    def _call_result(self, e: AgEvent) -> list[Chunk]:
        call, content = _text(e, "toolCallId"), e.get("content")
        out = self._call_end(call)
        return [
            *out,
            {"type": "tool-output-available", "toolCallId": call, "output": _loads(content)},
        ]

    # Everything else.

    def _state(self, e: AgEvent) -> list[Chunk]:
        return [{"type": "data-agui-state", "data": e.get("snapshot")}]

    def _state_delta(self, e: AgEvent) -> list[Chunk]:
        return [{"type": "data-agui-state-delta", "data": e.get("delta")}]

    def _activity(self, e: AgEvent) -> list[Chunk]:
        return [{"type": "data-agui-activity", "data": e}]

    def _custom(self, e: AgEvent) -> list[Chunk]:
        name = _text(e, "name")
        kind = f"data-{name}"
        if names.is_event_type(kind):
            return [{"type": kind, "data": e.get("value")}]
        return [{"type": "data-agui-custom", "data": {"name": name, "value": e.get("value")}}]


def _text(e: AgEvent, key: str, *, empty: bool = False) -> str:
    value = e.get(key)
    if not isinstance(value, str) or (not value and not empty):
        kind = e.get("type")
        raise AgUiInvalid(f"{kind}: {key} must be a {'string' if empty else 'non-empty string'}")
    return value


def _loads(content: Any) -> Any:
    """A tool result's content, parsed when it is JSON (kept as text when it is not);
    AgUiInvalid for JSON no reader can take (NaN, an infinity, a lone surrogate, deeper
    than the limit)."""
    if not isinstance(content, str):
        return content
    try:
        return events.loads_strict(content)
    except events.InvalidJson as exc:
        if exc.code != "invalid_json":
            raise AgUiInvalid(f"TOOL_CALL_RESULT: content: {exc}"[:300]) from None
        return content


_HANDLERS = {
    "RUN_STARTED": ChunkMapper._run_started,
    "RUN_FINISHED": ChunkMapper._run_finished,
    "RUN_ERROR": ChunkMapper._run_error,
    "STEP_STARTED": ChunkMapper._step_started,
    "STEP_FINISHED": ChunkMapper._step_finished,
    "TEXT_MESSAGE_START": ChunkMapper._text_start,
    "TEXT_MESSAGE_CONTENT": ChunkMapper._text_content,
    "TEXT_MESSAGE_END": ChunkMapper._text_ended,
    "TEXT_MESSAGE_CHUNK": ChunkMapper._text_chunk,
    "REASONING_MESSAGE_START": ChunkMapper._reasoning_start,
    "REASONING_MESSAGE_CONTENT": ChunkMapper._reasoning_content,
    "REASONING_MESSAGE_END": ChunkMapper._reasoning_ended,
    "REASONING_MESSAGE_CHUNK": ChunkMapper._reasoning_chunk,
    "REASONING_ENCRYPTED_VALUE": ChunkMapper._encrypted,
    "THINKING_TEXT_MESSAGE_START": ChunkMapper._thinking_start,
    "THINKING_TEXT_MESSAGE_CONTENT": ChunkMapper._thinking_content,
    "THINKING_TEXT_MESSAGE_END": ChunkMapper._thinking_end,
    "TOOL_CALL_START": ChunkMapper._call_start,
    "TOOL_CALL_ARGS": ChunkMapper._call_args,
    "TOOL_CALL_END": ChunkMapper._call_ended,
    "TOOL_CALL_CHUNK": ChunkMapper._call_chunk,
    "TOOL_CALL_RESULT": ChunkMapper._call_result,
    "STATE_SNAPSHOT": ChunkMapper._state,
    "STATE_DELTA": ChunkMapper._state_delta,
    "ACTIVITY_SNAPSHOT": ChunkMapper._activity,
    "ACTIVITY_DELTA": ChunkMapper._activity,
    "CUSTOM": ChunkMapper._custom,
}


def as_events(item: Any) -> list[AgEvent]:
    """The AG-UI events in one item an agent yields: a dict, a model of the
    ``ag-ui-protocol`` package (its fields by their camelCase aliases), or SSE text (``str``
    or ``bytes``, one or more ``data:`` frames, as ``ag_ui.encoder.EventEncoder`` writes)."""
    if isinstance(item, dict):
        return [item]
    if isinstance(item, (str, bytes)):
        return sse_events(item)
    dump = getattr(item, "model_dump", None)
    if callable(dump):
        found = dump(by_alias=True, exclude_none=True, mode="json")
        if isinstance(found, dict):
            return [found]
    raise AgUiInvalid(f"not an AG-UI event: {type(item).__name__}")


def sse_events(body: str | bytes) -> list[AgEvent]:
    """The events of AG-UI SSE text: each ``data:`` line's JSON (other lines ignored)."""
    text = body.decode() if isinstance(body, bytes) else body
    out: list[AgEvent] = []
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        if len(line) > MAX_EVENT_BYTES:
            raise AgUiInvalid(f"an AG-UI event over {MAX_EVENT_BYTES} bytes")
        try:
            event = events.loads_strict(line[5:])
        except events.InvalidJson as exc:
            raise AgUiInvalid(f"a data: line that is not JSON: {exc}"[:300]) from None
        if not isinstance(event, dict):
            raise AgUiInvalid("an AG-UI event must be a JSON object")
        out.append(event)
    return out


def map_events(mapper: ChunkMapper, events: Iterable[AgEvent]) -> list[Chunk]:
    """The chunks of ``events``, in order."""
    return [chunk for event in events for chunk in mapper.feed(event)]


async def ui_chunks(events: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[Chunk]:
    """An AG-UI agent's events (``as_events``' kinds) as UI message chunks, ending with
    ``finish`` (or ``abort``, or ``error``, also when the events stop before the run's
    end): what a worker appends to a generation that runs an AG-UI agent."""
    mapper = ChunkMapper()
    if isinstance(events, AsyncIterable):
        async for item in events:
            for chunk in map_events(mapper, as_events(item)):
                yield chunk
    else:
        for chunk in _sync(mapper, events):
            yield chunk
    for chunk in mapper.close():
        yield chunk


def _sync(mapper: ChunkMapper, events: Iterable[Any]) -> Iterator[Chunk]:
    for item in events:
        yield from map_events(mapper, as_events(item))
