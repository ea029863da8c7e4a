"""One agent step's chunks in the neutral vocabulary (``worker.providers.parts``), so that
the worker's one mapping (``worker.mapping``) makes the contract's events of them. Pure.

AI SDK UI chunks become text, reasoning and tool parts (a tool that is not one of the
request's own is ``providerExecuted``); what has no part (a tool's output, ``data-*``,
sources, files) passes as it is (``Passed``); Anthropic raw events are read by
``anthropic_stream``. The worker writes the answer's own frame: an agent's ``start``,
``finish`` and step chunks only mark step boundaries; an ``error`` chunk fails it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from worker.agents.job import Asked, Chunk
from worker.mapping import PASSED_TYPES
from worker.providers.anthropic_stream import AnthropicReader
from worker.providers.parts import (
    Delta,
    ModelEvent,
    PartEnd,
    PartKind,
    PartStart,
    Passed,
    Stop,
)

RESERVED_DATA = frozenset(
    {"data-approval", "data-steer", "data-continued", "data-retry", "data-viewers"}
)
"""The worker's and front-end's own data parts: an agent's are dropped."""

_DROPPED = frozenset(
    {"start", "finish", "finish-step", "message-metadata", "abort", "message_stop", "ping"}
)
_RAW = frozenset(
    {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"}
)


class AgentError(Exception):
    """The agent sent an ``error`` chunk, or a chunk that is not one."""


def boundary(chunk: Chunk) -> bool:
    """Whether ``chunk`` begins one of the agent's steps."""
    return chunk.get("type") in ("start-step", "message_start")


@dataclass
class StepChunks:
    """The chunks of one step, translated as they come."""

    client_tools: frozenset[str]
    parts: dict[tuple[str, str], int] = field(default_factory=dict)
    """Open parts: (kind, the agent's id) -> index in the step."""
    typed: set[str] = field(default_factory=set)
    """Tool calls whose input came as deltas."""
    client_calls: int = 0
    deltas: int = 0
    """Text, reasoning and tool input deltas: the step's output tokens, roughly, for an
    agent that reports none."""
    output: bool = False
    finish: str | None = None
    """Why the agent's own raw events say the step stopped (``message_delta``)."""
    _next: int = 0
    _raw_base: int = 0
    _reader: AnthropicReader = field(default_factory=AnthropicReader)

    def feed(self, chunk: Chunk) -> list[ModelEvent]:
        kind = chunk.get("type")
        if not isinstance(kind, str):
            raise AgentError(f"the agent yielded something that is not a chunk: {chunk!r:.200}")
        if kind == "error":
            raise AgentError(str(chunk.get("errorText") or "the agent failed"))
        if kind in _DROPPED or boundary(chunk):
            if kind == "message_start":
                self._raw_base, self._reader = self._next, AnthropicReader()
            return []
        if kind in _RAW:
            return self._raw(chunk)
        if kind.startswith("text-"):
            return self._part("text", chunk)
        if kind.startswith("reasoning-"):
            return self._part("reasoning", chunk)
        if kind.startswith("tool-input-"):
            return self._tool(kind, chunk)
        if kind in PASSED_TYPES or (kind.startswith("data-") and kind not in RESERVED_DATA):
            self.output = True
            return [Passed(chunk)]
        return []  # tool-approval-request (ask with job.approval), and anything unknown

    def _open(self, key: tuple[str, str], start: PartStart) -> list[ModelEvent]:
        self.parts[key] = start.index
        self._next += 1
        self.output = True
        return [start]

    def _end(self, key: tuple[str, str]) -> list[ModelEvent]:
        index = self.parts.pop(key, None)
        return [] if index is None else [PartEnd(index)]

    def _part(self, kind: PartKind, chunk: Chunk) -> list[ModelEvent]:
        key = (kind, str(chunk.get("id") or kind))
        action = str(chunk["type"]).rsplit("-", 1)[1]
        if action == "end":
            return self._end(key)
        out = [] if key in self.parts else self._open(key, PartStart(self._next, kind))
        piece = chunk.get("delta")
        if action == "delta" and isinstance(piece, str) and piece:
            self.deltas += 1
            out.append(Delta(self.parts[key], piece))
        return out

    def _tool(self, kind: str, chunk: Chunk) -> list[ModelEvent]:
        call_id = str(chunk.get("toolCallId") or "")
        if not call_id:
            raise AgentError(f"{kind} without a toolCallId")
        key = ("tool", call_id)
        out: list[ModelEvent] = []
        if key not in self.parts:
            name = str(chunk.get("toolName") or "")
            own = name not in self.client_tools
            self.client_calls += 0 if own else 1
            start = PartStart(self._next, "tool", call_id=call_id, name=name, provider_executed=own)
            out += self._open(key, start)
        index = self.parts[key]
        piece = chunk.get("inputTextDelta")
        if kind == "tool-input-delta" and isinstance(piece, str) and piece:
            self.typed.add(call_id)
            self.deltas += 1
            out.append(Delta(index, piece))
        if kind == "tool-input-available":
            if call_id not in self.typed:
                out.append(Delta(index, json.dumps(chunk.get("input", {}), separators=(",", ":"))))
            out += self._end(key)
        return out

    def asked(self, asked: tuple[Asked, ...]) -> list[ModelEvent]:
        """The calls that wait for a person, as calls the client would run (which the
        step loop then gates): the ones the agent showed already, closed as such."""
        out: list[ModelEvent] = []
        for a in asked:
            key = ("tool", a.call_id)
            out += self._end(key)
            out += self._open(key, PartStart(self._next, "tool", call_id=a.call_id, name=a.name))
            out.append(Delta(self.parts[key], json.dumps(a.input, separators=(",", ":"))))
            out += self._end(key)
        return out

    def _raw(self, raw: Chunk) -> list[ModelEvent]:
        out: list[ModelEvent] = []
        for event in self._reader.feed(raw):
            if isinstance(event, Stop):
                self.finish = event.finish
            elif isinstance(event, PartStart | Delta | PartEnd):
                out.append(self._moved(event))
        return out

    def _moved(self, event: PartStart | Delta | PartEnd) -> ModelEvent:
        """An agent's raw part event, numbered after the step's parts so far."""
        moved = dataclasses.replace(event, index=self._raw_base + event.index)
        self._next = max(self._next, moved.index + 1)
        if isinstance(moved, PartStart):
            self.output = True
            if moved.kind == "tool" and not moved.provider_executed:
                self.client_calls += 1
        elif isinstance(moved, Delta):
            self.deltas += 1
        return moved

    def close(self) -> list[ModelEvent]:
        """The parts the agent left open, closed."""
        out: list[ModelEvent] = []
        for key in list(self.parts):
            out += self._end(key)
        return out


TOOL_OUTPUTS = ("tool-output-available", "tool-output-error", "tool-output-denied")
"""The chunks that end a tool call: its output, its error, its denial."""


@dataclass(slots=True)
class ShownStep:
    """One step as the log shows it, for an adapter to rebuild its framework's history:
    its text parts (not empty), the tool calls it made (``id -> (tool name, input)``),
    and the steering messages recorded after it (not empty)."""

    texts: list[str]
    calls: dict[str, tuple[str, Any]]
    steering: list[str]


def shown_steps(steps: list[list[Chunk]]) -> tuple[list[ShownStep], dict[str, Chunk]]:
    """The steps shown so far, folded (a call shown in two steps, as a decision's resume
    shows it again, belongs to the first), and each call's output chunk by call id."""
    outputs = {
        str(e.get("toolCallId")): e for s in steps for e in s if e.get("type") in TOOL_OUTPUTS
    }
    found: list[ShownStep] = []
    seen: set[str] = set()
    for events in steps:
        texts: dict[str, str] = {}
        step = ShownStep([], {}, [])
        for e in events:
            kind = e.get("type")
            if kind == "text-delta":
                texts[str(e.get("id"))] = texts.get(str(e.get("id")), "") + str(e.get("delta"))
            elif kind == "tool-input-available" and str(e.get("toolCallId")) not in seen:
                step.calls[str(e.get("toolCallId"))] = (str(e.get("toolName")), e.get("input"))
            elif kind == "data-steer" and isinstance(e.get("data"), dict):
                text = str(e["data"].get("text") or "")
                if text:
                    step.steering.append(text)
        seen.update(step.calls)
        step.texts = [t for t in texts.values() if t]
        found.append(step)
    return found, outputs


__all__ = ["TOOL_OUTPUTS", "AgentError", "ShownStep", "StepChunks", "boundary", "shown_steps"]
