"""The AI SDK's UI message chunks as AG-UI events: pure, no I/O.

A ``Mapper`` turns a generation's log into its AG-UI view one chunk at a time. What is
open (the run, the step, messages, reasoning, tool calls: ``Open``) is folded from the
AG-UI events themselves, so the state after any event is known exactly and a resume
there re-opens it (``prelude``). Message ids are ``<generation>.<seq of the start>``
because the AI SDK's part ids repeat from step to step. The chunk-by-chunk mapping is
tabled in docs/agui.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from broadcaster.core.events import Usage

AgEvent = dict[str, Any]

TERMINAL = frozenset({"finish", "abort", "error"})


@dataclass(frozen=True, slots=True)
class Open:
    """What is open after an AG-UI event: immutable, so a snapshot is a reference."""

    run: tuple[str, str] | None = None
    """``(threadId, runId)`` of a run started and not yet ended."""
    step: str | None = None
    texts: tuple[str, ...] = ()
    reasoning: tuple[tuple[str, bool], ...] = ()
    """Open reasoning spans: ``(messageId, its message still open)``."""
    calls: tuple[tuple[str, str], ...] = ()
    """Open tool calls: ``(toolCallId, toolCallName)``."""
    ended: bool = False

    def apply(self, event: AgEvent) -> Open:
        """The state after ``event``; itself when nothing opens or closes."""
        kind = event["type"]
        if kind in _NEUTRAL:
            return self
        if kind == "RUN_STARTED":
            return Open(run=(event["threadId"], event["runId"]))
        if kind in ("RUN_FINISHED", "RUN_ERROR"):
            return Open(ended=True)
        if kind == "STEP_STARTED":
            return replace(self, step=event["stepName"])
        if kind == "STEP_FINISHED":
            return replace(self, step=None)
        if kind == "TEXT_MESSAGE_START":
            return replace(self, texts=(*self.texts, event["messageId"]))
        if kind == "TEXT_MESSAGE_END":
            return replace(self, texts=tuple(t for t in self.texts if t != event["messageId"]))
        if kind == "REASONING_START":
            return replace(self, reasoning=(*self.reasoning, (event["messageId"], False)))
        if kind in ("REASONING_MESSAGE_START", "REASONING_MESSAGE_END"):
            opened = kind == "REASONING_MESSAGE_START"
            mid = event["messageId"]
            spans = tuple((m, opened if m == mid else o) for m, o in self.reasoning)
            return replace(self, reasoning=spans)
        if kind == "REASONING_END":
            spans = tuple(s for s in self.reasoning if s[0] != event["messageId"])
            return replace(self, reasoning=spans)
        if kind == "TOOL_CALL_START":
            return replace(self, calls=(*self.calls, (event["toolCallId"], event["toolCallName"])))
        if kind == "TOOL_CALL_END":
            calls = tuple(c for c in self.calls if c[0] != event["toolCallId"])
            return replace(self, calls=calls)
        return self

    def closing(self) -> list[AgEvent]:
        """The events that close what is open, innermost first (before a ``RUN_FINISHED``,
        which the AG-UI client refuses while anything is open)."""
        out: list[AgEvent] = [{"type": "TOOL_CALL_END", "toolCallId": c} for c, _ in self.calls]
        out += [{"type": "TEXT_MESSAGE_END", "messageId": t} for t in self.texts]
        for mid, message_open in self.reasoning:
            if message_open:
                out.append({"type": "REASONING_MESSAGE_END", "messageId": mid})
            out.append({"type": "REASONING_END", "messageId": mid})
        if self.step is not None:
            out.append({"type": "STEP_FINISHED", "stepName": self.step})
        return out


_NEUTRAL = frozenset(
    {
        "TEXT_MESSAGE_CONTENT",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_RESULT",
        "REASONING_MESSAGE_CONTENT",
        "REASONING_ENCRYPTED_VALUE",
        "CUSTOM",
    }
)


def prelude(state: Open) -> list[AgEvent]:
    """What re-opens ``state`` on a new connection, so that the events after it pass the
    AG-UI client's verification: ``RUN_STARTED``, the open step, then each open text
    message, reasoning span (and its message) and tool call. Nothing once the run ended
    or before it started."""
    if state.run is None or state.ended:
        return []
    thread, run = state.run
    out: list[AgEvent] = [{"type": "RUN_STARTED", "threadId": thread, "runId": run}]
    if state.step is not None:
        out.append({"type": "STEP_STARTED", "stepName": state.step})
    for mid, message_open in state.reasoning:
        out.append({"type": "REASONING_START", "messageId": mid})
        if message_open:
            out.append({"type": "REASONING_MESSAGE_START", "messageId": mid, "role": "reasoning"})
    out += [
        {"type": "TEXT_MESSAGE_START", "messageId": t, "role": "assistant"} for t in state.texts
    ]
    out += [
        {"type": "TOOL_CALL_START", "toolCallId": c, "toolCallName": name}
        for c, name in state.calls
    ]
    return out


def token_usage(metadata: Any) -> dict[str, Any] | None:
    """A ``finish``'s ``messageMetadata.usage`` (the AI SDK's ``LanguageModelUsage``) as
    AG-UI's ``TokenUsage``: ``inputTokens`` all input, ``cachedInputTokens`` (reads) and
    ``cacheWriteInputTokens`` parts of it, ``reasoningTokens`` a part of
    ``outputTokens``; with the ``model`` (and ``provider``) the metadata names."""
    if not isinstance(metadata, dict) or not isinstance(metadata.get("usage"), dict):
        return None
    usage = Usage.from_ai_sdk(metadata["usage"])
    out: dict[str, Any] = {
        "inputTokens": usage.input,
        "outputTokens": usage.output,
        "totalTokens": usage.total,
        "reasoningTokens": usage.reasoning,
        "cachedInputTokens": usage.cache_read,
        "cacheWriteInputTokens": usage.cache_write,
    }
    for name in ("provider", "model"):
        if isinstance(metadata.get(name), str):
            out[name] = metadata[name]
    return out


def interrupted(state: Open, approvals: list[tuple[str, str]]) -> list[AgEvent]:
    """A run's end where its generation waits for a person: what is open closed, then
    ``RUN_FINISHED`` with an ``interrupt`` outcome naming each approval it waits on
    (``(approvalId, toolCallId)``)."""
    if state.run is None:
        return []
    thread, run = state.run
    interrupts = [
        {"id": approval, "reason": "tool_approval", "toolCallId": call}
        for approval, call in approvals
    ]
    finished = {
        "type": "RUN_FINISHED",
        "threadId": thread,
        "runId": run,
        "outcome": {"type": "interrupt", "interrupts": interrupts},
    }
    return [*state.closing(), finished]


@dataclass(slots=True)
class Mapper:
    """One generation's chunks, in seq order, to AG-UI events."""

    thread_id: str
    run_id: str
    state: Open = field(default_factory=Open)
    steps: int = 0
    texts: dict[str, str] = field(default_factory=dict)
    """The AI SDK text part id -> its open AG-UI message id."""

    def feed(self, seq: int, chunk: dict[str, Any]) -> list[AgEvent]:
        """The AG-UI events of the chunk at ``seq`` (none after the run's end)."""
        if self.state.ended:
            return []
        kind = str(chunk.get("type"))
        out: list[AgEvent] = []
        if self.state.run is None:
            out.append({"type": "RUN_STARTED", "threadId": self.thread_id, "runId": self.run_id})
            self.state = self.state.apply(out[0])
        if kind != "start":
            made = self._map(seq, kind, chunk)
            for event in made:
                self.state = self.state.apply(event)
            out += made
        return out

    def _map(self, seq: int, kind: str, c: dict[str, Any]) -> list[AgEvent]:
        handler = _HANDLERS.get(kind)
        if handler is not None:
            return handler(self, seq, c)
        if kind.startswith("data-"):
            return [{"type": "CUSTOM", "name": kind, "value": c.get("data")}]
        return [{"type": "CUSTOM", "name": kind, "value": c}]

    def _start_step(self, seq: int, c: dict[str, Any]) -> list[AgEvent]:
        self.steps += 1
        started = [] if self.state.step is None else self.state.closing()[-1:]
        return [*started, {"type": "STEP_STARTED", "stepName": f"step-{self.steps}"}]

    def _finish_step(self, seq: int, c: dict[str, Any]) -> list[AgEvent]:
        if self.state.step is None:
            return []
        return [{"type": "STEP_FINISHED", "stepName": self.state.step}]

    def _text_start(self, seq: int, c: dict[str, Any]) -> list[AgEvent]:
        mid = f"{self.run_id}.{seq}"
        self.texts[str(c.get("id"))] = mid
        return [{"type": "TEXT_MESSAGE_START", "messageId": mid, "role": "assistant"}]

    def _text_delta(self, seq: int, c: dict[str, Any]) -> list[AgEvent]:
        mid = self.texts.get(str(c.get("id")))
        delta = c.get("delta")
        if mid is None or not isinstance(delta, str) or not delta:
            return []
        return [{"type": "TEXT_MESSAGE_CONTENT", "messageId": mid, "delta": delta}]

    def _text_end(self, seq: int, c: dict[str, Any]) -> list[AgEvent]:
        mid = self.texts.pop(str(c.get("id")), None)
        return [] if mid is None else [{"type": "TEXT_MESSAGE_END", "messageId": mid}]

    def _reasoning_start(self, seq: int, c: dict[str, Any]) -> list[AgEvent]:
        mid = f"{self.run_id}.{seq}"
        self.texts["r:" + str(c.get("id"))] = mid
        out: list[AgEvent] = [
            {"type": "REASONING_START", "messageId": mid},
            {"type": "REASONING_MESSAGE_START", "messageId": mid, "role": "reasoning"},
        ]
        return out + _encrypted(mid, c)

    def _reasoning_delta(self, seq: int, c: dict[str, Any]) -> list[AgEvent]:
        mid = self.texts.get("r:" + str(c.get("id")))
        if mid is None:
            return []
        delta = c.get("delta")
        out: list[AgEvent] = []
        if isinstance(delta, str) and delta:
            out.append({"type": "REASONING_MESSAGE_CONTENT", "messageId": mid, "delta": delta})
        return out + _encrypted(mid, c)

    def _reasoning_end(self, seq: int, c: dict[str, Any]) -> list[AgEvent]:
        mid = self.texts.pop("r:" + str(c.get("id")), None)
        if mid is None:
            return []
        return [
            *_encrypted(mid, c),
            {"type": "REASONING_MESSAGE_END", "messageId": mid},
            {"type": "REASONING_END", "messageId": mid},
        ]

    def _call_open(self, call: str) -> bool:
        return any(c == call for c, _ in self.state.calls)

    def _input_start(self, seq: int, c: dict[str, Any]) -> list[AgEvent]:
        call = str(c.get("toolCallId"))
        if self._call_open(call):
            return []
        return [self._call_start(seq, call, str(c.get("toolName")))]

    def _call_start(self, seq: int, call: str, name: str) -> AgEvent:
        """A call's start, on an assistant message of its own named as the mapping names
        messages (``<generation>.<seq>``), so a thread sent back names its answer."""
        return {
            "type": "TOOL_CALL_START",
            "toolCallId": call,
            "toolCallName": name,
            "parentMessageId": f"{self.run_id}.{seq}",
        }

    def _input_delta(self, seq: int, c: dict[str, Any]) -> list[AgEvent]:
        call, delta = str(c.get("toolCallId")), c.get("inputTextDelta")
        if not self._call_open(call) or not isinstance(delta, str) or not delta:
            return []
        return [{"type": "TOOL_CALL_ARGS", "toolCallId": call, "delta": delta}]

    def _input_done(self, seq: int, c: dict[str, Any]) -> list[AgEvent]:
        call = str(c.get("toolCallId"))
        out: list[AgEvent] = []
        if not self._call_open(call):
            out.append(self._call_start(seq, call, str(c.get("toolName"))))
            if "input" in c:
                out.append(
                    {"type": "TOOL_CALL_ARGS", "toolCallId": call, "delta": _json(c["input"])}
                )
        out.append({"type": "TOOL_CALL_END", "toolCallId": call})
        return out

    def _result(self, seq: int, c: dict[str, Any]) -> list[AgEvent]:
        kind = c.get("type")
        if kind == "tool-output-available":
            content = _json(c.get("output"))
        elif kind == "tool-output-error":
            content = _json({"error": c.get("errorText")})
        else:
            content = _json({"denied": True})
        return [
            {
                "type": "TOOL_CALL_RESULT",
                "messageId": f"{self.run_id}.{seq}",
                "toolCallId": str(c.get("toolCallId")),
                "content": content,
                "role": "tool",
            }
        ]

    def _finish(self, seq: int, c: dict[str, Any]) -> list[AgEvent]:
        outcome = {"type": "cancelled" if c.get("type") == "abort" else "success"}
        finished: AgEvent = {
            "type": "RUN_FINISHED",
            "threadId": self.thread_id,
            "runId": self.run_id,
            "outcome": outcome,
        }
        usage = token_usage(c.get("messageMetadata"))
        if usage is not None:
            finished["usage"] = [usage]
        return [*self.state.closing(), finished]

    def _error(self, seq: int, c: dict[str, Any]) -> list[AgEvent]:
        text = c.get("errorText")
        return [
            {"type": "RUN_ERROR", "message": str(text or "the generation failed"), "code": "error"}
        ]


def _encrypted(mid: str, c: dict[str, Any]) -> list[AgEvent]:
    """A signature (or redacted thinking) in a reasoning chunk's ``providerMetadata``."""
    meta = c.get("providerMetadata")
    anthropic = meta.get("anthropic") if isinstance(meta, dict) else None
    agui = meta.get("agui") if isinstance(meta, dict) else None
    if isinstance(agui, dict):  # published as AG-UI (inbound.py): the value it came with
        anthropic = {"signature": agui.get("encryptedValue")}
    if not isinstance(anthropic, dict):
        return []
    value = anthropic.get("signature") or anthropic.get("redactedData")
    if not isinstance(value, str) or not value:
        return []
    return [
        {
            "type": "REASONING_ENCRYPTED_VALUE",
            "subtype": "message",
            "entityId": mid,
            "encryptedValue": value,
        }
    ]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_HANDLERS = {
    "start-step": Mapper._start_step,
    "finish-step": Mapper._finish_step,
    "text-start": Mapper._text_start,
    "text-delta": Mapper._text_delta,
    "text-end": Mapper._text_end,
    "reasoning-start": Mapper._reasoning_start,
    "reasoning-delta": Mapper._reasoning_delta,
    "reasoning-end": Mapper._reasoning_end,
    "tool-input-start": Mapper._input_start,
    "tool-input-delta": Mapper._input_delta,
    "tool-input-available": Mapper._input_done,
    "tool-input-error": Mapper._input_done,
    "tool-output-available": Mapper._result,
    "tool-output-error": Mapper._result,
    "tool-output-denied": Mapper._result,
    "finish": Mapper._finish,
    "abort": Mapper._finish,
    "error": Mapper._error,
}
