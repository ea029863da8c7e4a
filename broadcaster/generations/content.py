"""A generation's assistant turn as Anthropic content blocks, folded from its events.

Pure (``fold(events)``, or ``ContentFold`` one event at a time). ``GET
/v1/generations/{id}`` answers with it as ``content``, so a client can send the turn
back unchanged (signatures, redacted data, tool ids and inputs kept). Only the latest
attempt counts (``data-retry`` and ``start`` begin again); a continued step streams
into the same parts, a restarted one (``data-continued``, ``mode: "restart"``) drops
what it showed. Provider-run tools are left out: Anthropic refuses a
``server_tool_use`` sent back without its result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ContentBlock = dict[str, Any]


def _anthropic(event: dict[str, Any]) -> dict[str, Any]:
    meta = event.get("providerMetadata")
    found = meta.get("anthropic") if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else {}


@dataclass
class ContentFold:
    """The blocks of the turn so far, in the order they started."""

    blocks: list[ContentBlock] = field(default_factory=list)
    _by_id: dict[tuple[str, str], ContentBlock] = field(default_factory=dict)
    _tool_json: dict[str, list[str]] = field(default_factory=dict)
    _step_at: int = 0
    """Where the current step's blocks begin."""

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("start", "data-retry"):
            self.blocks.clear()
            self._by_id.clear()
            self._tool_json.clear()
            self._step_at = 0
        elif kind == "start-step":
            self._step_at = len(self.blocks)
        elif kind == "data-continued" and restarts(event):
            del self.blocks[self._step_at :]
            self._by_id.clear()
        elif isinstance(kind, str) and kind.startswith("reasoning-"):
            self._reasoning(kind, event)
        elif kind in ("text-start", "text-delta"):
            self._text(kind, event)
        elif isinstance(kind, str) and kind.startswith("tool-input-"):
            self._tool(kind, event)

    def _open(self, key: tuple[str, str], block: ContentBlock) -> None:
        self._by_id[key] = block
        self.blocks.append(block)

    def _reasoning(self, kind: str, event: dict[str, Any]) -> None:
        key = ("r", str(event.get("id")))
        meta = _anthropic(event)
        if kind == "reasoning-start":
            if isinstance(meta.get("redactedData"), str):
                self._open(key, {"type": "redacted_thinking", "data": meta["redactedData"]})
            else:
                self._open(key, {"type": "thinking", "thinking": "", "signature": ""})
        block = self._by_id.get(key)
        if block is None or block["type"] != "thinking":
            return
        delta = event.get("delta")
        if kind == "reasoning-delta" and isinstance(delta, str):
            block["thinking"] += delta
        if isinstance(meta.get("signature"), str):
            block["signature"] = meta["signature"]

    def _text(self, kind: str, event: dict[str, Any]) -> None:
        key = ("t", str(event.get("id")))
        if kind == "text-start":
            self._open(key, {"type": "text", "text": ""})
            return
        block = self._by_id.get(key)
        delta = event.get("delta")
        if block is not None and isinstance(delta, str):
            block["text"] += delta

    def _tool(self, kind: str, event: dict[str, Any]) -> None:
        call_id = str(event.get("toolCallId"))
        key = ("c", call_id)
        if kind == "tool-input-start":
            if event.get("providerExecuted"):
                return
            self._open(
                key, {"type": "tool_use", "id": call_id, "name": event.get("toolName"), "input": {}}
            )
            self._tool_json[call_id] = []
            return
        block = self._by_id.get(key)
        if block is None:
            return
        if kind == "tool-input-delta" and isinstance(event.get("inputTextDelta"), str):
            self._tool_json[call_id].append(event["inputTextDelta"])
        elif kind == "tool-input-available":
            block["input"] = event.get("input")
        elif kind == "tool-input-error":
            # A call cut off in its input (its worker was lost) never ran and is not part
            # of the turn: Anthropic refuses a tool_use sent back with no result.
            self.blocks.remove(block)
            del self._by_id[key]

    def result(self) -> list[ContentBlock]:
        """The blocks; a tool call whose input is not complete yet has what parses of it
        (``{}`` until then). An input that is not a JSON object (the model wrote broken
        JSON) is ``{}`` too: Anthropic takes only objects back, and the turn must go back
        as it is. A text block that stayed empty is left out: Anthropic refuses one."""
        out = [dict(block) for block in self.blocks if block != {"type": "text", "text": ""}]
        for block in out:
            if block["type"] == "tool_use" and not (
                isinstance(block["input"], dict) and block["input"]
            ):
                block["input"] = _object(self._tool_json.get(block["id"], []))
        return out


def restarts(event: dict[str, Any]) -> bool:
    """A takeover's notice that the step it is in was restarted: its parts are dropped."""
    data = event.get("data")
    return isinstance(data, dict) and data.get("mode") == "restart"


def _object(parts: list[str]) -> dict[str, Any]:
    try:
        parsed = json.loads("".join(parts))
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def fold(events: Iterable[dict[str, Any]]) -> list[ContentBlock]:
    """The assistant turn of these events (a generation's, in seq order)."""
    folding = ContentFold()
    for event in events:
        folding.feed(event)
    return folding.result()
