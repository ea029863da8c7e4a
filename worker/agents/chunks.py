"""One agent step's chunks as Anthropic raw stream events, so that the worker's one
mapping (``worker.mapping``) makes the contract's events of them. Pure: no I/O.

AI SDK UI chunks become content blocks: ``text-*`` text blocks, ``reasoning-*``
thinking blocks, ``tool-input-*`` tool use; a tool the agent runs itself (any tool that
is not one of the request's own, which the client runs) is ``server_tool_use``, shown
with ``providerExecuted``. What Anthropic's stream has no form for (a tool's output, a
``data-*`` part, a source, a file) is passed on as it is (``mapping.PASSED_ON``). Anthropic
raw events from an agent pass through, their blocks renumbered into the step's.

The worker writes the answer's own frame (``start``, ``finish``, ``start-step``,
``finish-step``): an agent's are dropped, its ``start-step`` and ``message_start`` only
mark where its next step begins (``boundary``). An ``error`` chunk fails the answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from worker.agents.job import Asked, Chunk
from worker.mapping import PASSED_ON, PASSED_TYPES

Raw = dict[str, Any]

RESERVED_DATA = frozenset(
    {"data-approval", "data-steer", "data-continued", "data-retry", "data-viewers"}
)
"""The worker's and front-end's own data parts: an agent's are dropped."""

_DROPPED = frozenset(
    {"start", "finish", "finish-step", "message-metadata", "abort", "message_stop", "ping"}
)
_RAW_BLOCKS = frozenset({"content_block_start", "content_block_delta", "content_block_stop"})


class AgentError(Exception):
    """The agent sent an ``error`` chunk, or a chunk that is not one."""


def boundary(chunk: Chunk) -> bool:
    """Whether ``chunk`` begins one of the agent's steps."""
    return chunk.get("type") in ("start-step", "message_start")


@dataclass
class StepChunks:
    """The chunks of one step, translated as they come."""

    client_tools: frozenset[str]
    blocks: dict[tuple[str, str], int] = field(default_factory=dict)
    """Open blocks: (kind, the agent's id) -> index in the step."""
    typed: set[str] = field(default_factory=set)
    """Tool calls whose input came as deltas."""
    client_calls: int = 0
    deltas: int = 0
    """Text, reasoning and tool input deltas: the step's output tokens, roughly, for an
    agent that reports none."""
    output: bool = False
    stop_reason: str | None = None
    _next: int = 0
    _raw_base: int = 0

    def feed(self, chunk: Chunk) -> list[Raw]:
        kind = chunk.get("type")
        if not isinstance(kind, str):
            raise AgentError(f"the agent yielded something that is not a chunk: {chunk!r:.200}")
        if kind == "error":
            raise AgentError(str(chunk.get("errorText") or "the agent failed"))
        if kind in _DROPPED or boundary(chunk):
            if kind == "message_start":
                self._raw_base = self._next
            return []
        if kind in _RAW_BLOCKS or kind == "message_delta":
            return self._raw(chunk)
        if kind.startswith("text-"):
            return self._block("text", chunk, {"type": "text", "text": ""}, "text_delta", "text")
        if kind.startswith("reasoning-"):
            thinking = {"type": "thinking", "thinking": "", "signature": ""}
            return self._block("reasoning", chunk, thinking, "thinking_delta", "thinking")
        if kind.startswith("tool-input-"):
            return self._tool(kind, chunk)
        if kind in PASSED_TYPES or (kind.startswith("data-") and kind not in RESERVED_DATA):
            self.output = True
            return [{"type": PASSED_ON, "chunk": chunk}]
        return []  # tool-approval-request (ask with job.approval), and anything unknown

    def _open(self, key: tuple[str, str], block: dict[str, Any]) -> list[Raw]:
        index = self._next
        self._next += 1
        self.blocks[key] = index
        self.output = True
        return [{"type": "content_block_start", "index": index, "content_block": block}]

    def _stop(self, key: tuple[str, str]) -> list[Raw]:
        index = self.blocks.pop(key, None)
        return [] if index is None else [{"type": "content_block_stop", "index": index}]

    def _block(
        self, kind: str, chunk: Chunk, block: dict[str, Any], delta_type: str, field_name: str
    ) -> list[Raw]:
        key = (kind, str(chunk.get("id") or kind))
        action = str(chunk["type"]).rsplit("-", 1)[1]
        if action == "end":
            return self._stop(key)
        out = [] if key in self.blocks else self._open(key, block)
        piece = chunk.get("delta")
        if action == "delta" and isinstance(piece, str) and piece:
            self.deltas += 1
            delta = {"type": delta_type, field_name: piece}
            out.append({"type": "content_block_delta", "index": self.blocks[key], "delta": delta})
        return out

    def _tool(self, kind: str, chunk: Chunk) -> list[Raw]:
        call_id = str(chunk.get("toolCallId") or "")
        if not call_id:
            raise AgentError(f"{kind} without a toolCallId")
        key = ("tool", call_id)
        out: list[Raw] = []
        if key not in self.blocks:
            name = str(chunk.get("toolName") or "")
            own = name not in self.client_tools
            self.client_calls += 0 if own else 1
            block = {"type": "server_tool_use" if own else "tool_use", "id": call_id, "name": name}
            out += self._open(key, {**block, "input": {}})
        index = self.blocks[key]
        piece = chunk.get("inputTextDelta")
        if kind == "tool-input-delta" and isinstance(piece, str) and piece:
            self.typed.add(call_id)
            self.deltas += 1
            delta = {"type": "input_json_delta", "partial_json": piece}
            out.append({"type": "content_block_delta", "index": index, "delta": delta})
        if kind == "tool-input-available":
            if call_id not in self.typed:
                whole = json.dumps(chunk.get("input", {}), separators=(",", ":"))
                delta = {"type": "input_json_delta", "partial_json": whole}
                out.append({"type": "content_block_delta", "index": index, "delta": delta})
            out += self._stop(key)
        return out

    def asked(self, asked: tuple[Asked, ...]) -> list[Raw]:
        """The calls that wait for a person, as calls the client would run (which the
        step loop then gates): the ones the agent showed already, closed as such."""
        out: list[Raw] = []
        for a in asked:
            key = ("tool", a.call_id)
            out += self._stop(key)
            block = {"type": "tool_use", "id": a.call_id, "name": a.name, "input": {}}
            out += self._open(key, block)
            whole = json.dumps(a.input, separators=(",", ":"))
            delta = {"type": "input_json_delta", "partial_json": whole}
            out.append({"type": "content_block_delta", "index": self.blocks[key], "delta": delta})
            out += self._stop(key)
        return out

    def _raw(self, raw: Raw) -> list[Raw]:
        if raw["type"] == "message_delta":
            reason = (raw.get("delta") or {}).get("stop_reason")
            self.stop_reason = reason if isinstance(reason, str) else self.stop_reason
            return []
        index = raw.get("index")
        if not isinstance(index, int):
            return []
        moved = {**raw, "index": self._raw_base + index}
        self._next = max(self._next, moved["index"] + 1)
        if raw["type"] == "content_block_start":
            self.output = True
            if (raw.get("content_block") or {}).get("type") == "tool_use":
                self.client_calls += 1
        elif raw["type"] == "content_block_delta":
            self.deltas += 1
        return [moved]

    def close(self) -> list[Raw]:
        """The blocks the agent left open, closed."""
        out: list[Raw] = []
        for key in list(self.blocks):
            out += self._stop(key)
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
