"""A step cut off in the middle of its model call (its worker was lost): what closes the
parts it left open, and how the next worker goes on. Pure: no I/O.

``plan_cut`` reads the cut step's events: signed thinking and whole tool input are kept,
unsigned thinking and a cut tool call are closed and not sent back, and the step goes
on one of three ways (``Cut.mode``): ``continue`` (the model is asked to go on from the
partial turn, streaming into the same text part; ``worker.splice`` trims the seam),
``tools`` (the calls were whole: the step is taken as done) or ``restart`` (nothing can
be sent back: the step ends and is made again, its ``start-step`` saying ``reset:
true``). Each takeover begins with a transient ``data-continued`` notice, which the
folds (``generations.content``, ``chat.ui_message``) read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from broadcaster.generations.content import ContentFold

Event = dict[str, Any]
Mode = Literal["continue", "tools", "restart"]

CONTINUE_PROMPT = "Continue exactly where you stopped, without repeating anything."
"""The synthetic user turn after the partial assistant turn (Anthropic models from 4.6
refuse a conversation that ends with the assistant's turn, and none takes a prefill with
extended thinking)."""

NOTICE = "data-continued"
RESTARTED_STEP: Event = {"type": "start-step", "reset": True}
"""The ``start-step`` of a model call made again after its step was restarted: ``reset``
says the step before it was cut and is made again (extra fields on a known chunk are
read by every AI SDK reader from 6.0.231 and 7.0.32 as absent)."""
CUT_TOOL = "interrupted: the worker streaming this tool call was lost"
LOST_RUN = "interrupted: the worker running it was lost"
"""A non-idempotent tool's output when the worker running it was lost: it is not run
again (it may have acted), and the model is told so as an error result."""


@dataclass
class _Part:
    kind: str
    id: str
    open: bool = True
    text: str = ""
    signed: bool = False
    tool_name: str = ""
    whole: bool = False
    """A tool call whose input is complete (``tool-input-available``)."""
    provider: bool = False


@dataclass
class Cut:
    """How a cut step goes on."""

    mode: Mode
    closing: list[Event]
    """What closes the cut parts, to append before going on."""
    open_text: str | None
    """The text part left open that the continuation streams into (``continue``)."""
    partial_text: str
    """The text shown in the step, the end of which the continuation may repeat."""
    dropped: set[str] = field(default_factory=set)
    """Part ids (reasoning) and call ids (tools) that are not sent back to the model."""

    def notice(self, attempt: int, reason: str) -> Event:
        data = {"attempt": attempt, "reason": reason, "mode": self.mode}
        return {"type": NOTICE, "data": data, "transient": True}


def _parts(events: Sequence[Event]) -> list[_Part]:
    """The step's parts in the order they started, with what was shown of each."""
    parts: dict[tuple[str, str], _Part] = {}
    for e in events:
        kind = str(e.get("type"))
        family, _, step = kind.partition("-")
        if family in ("text", "reasoning"):
            key = (family, str(e.get("id")))
            if step == "start":
                parts[key] = _Part(family, key[1], signed=_redacted(e))
            elif (part := parts.get(key)) is not None:
                part.text += str(e.get("delta") or "") if step == "delta" else ""
                part.signed = part.signed or _signed(e)
                part.open = part.open and step != "end"
        elif kind.startswith("tool-"):
            _tool(parts, kind, e)
    return list(parts.values())


def _tool(parts: dict[tuple[str, str], _Part], kind: str, e: Event) -> None:
    key = ("tool", str(e.get("toolCallId")))
    if kind == "tool-input-start":
        parts[key] = _Part(
            "tool",
            key[1],
            tool_name=str(e.get("toolName")),
            provider=bool(e.get("providerExecuted")),
        )
    elif (part := parts.get(key)) is not None:
        if kind == "tool-input-delta":
            part.text += str(e.get("inputTextDelta") or "")
        elif kind == "tool-input-available":
            part.whole, part.open = True, False
        elif kind != "tool-approval-request":
            part.open = False


def _signed(e: Event) -> bool:
    meta = e.get("providerMetadata")
    inner = meta.get("anthropic") if isinstance(meta, dict) else None
    return isinstance(inner, dict) and bool(inner.get("signature"))


def _redacted(e: Event) -> bool:
    meta = e.get("providerMetadata")
    inner = meta.get("anthropic") if isinstance(meta, dict) else None
    return isinstance(inner, dict) and isinstance(inner.get("redactedData"), str)


def _input(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return {}


def plan_cut(events: Sequence[Event]) -> Cut:
    """How the step whose events (after its ``start-step``) are ``events`` goes on."""
    parts = _parts(events)
    closing: list[Event] = []
    dropped: set[str] = set()
    texts = [p for p in parts if p.kind == "text"]
    open_text = texts[-1].id if texts and texts[-1].open and texts[-1].text else None
    for p in parts:
        if p.kind == "reasoning" and p.open:
            closing.append({"type": "reasoning-end", "id": p.id})
        if p.kind == "reasoning" and not p.signed:
            dropped.add(p.id)
        if p.kind == "tool" and p.open:
            closing.append(_cut_call(p))
            dropped.add(p.id)
        if p.kind == "text" and p.open and p.id != open_text:
            closing.append({"type": "text-end", "id": p.id})
    partial = "".join(p.text for p in texts)
    calls = [p for p in parts if p.kind == "tool" and p.whole and not p.provider]
    if calls:
        if open_text is not None:
            closing.append({"type": "text-end", "id": open_text})
        return Cut("tools", closing, None, partial, dropped)
    if partial or not parts:
        return Cut("continue", closing, open_text, partial, dropped)
    return Cut("restart", [*closing, {"type": "finish-step"}], None, "", dropped)


def plan_restart(events: Sequence[Event]) -> Cut:
    """The cut step closed whole (its open text too) and its model call made again in a
    new step: what ``WORKER_TAKEOVER=restart`` does with every cut step, the way this
    worker took over before it could continue."""
    cut = plan_cut(events)
    closing = [e for e in cut.closing if e["type"] != "finish-step"]
    if cut.open_text is not None:
        closing.append({"type": "text-end", "id": cut.open_text})
    return Cut("restart", [*closing, {"type": "finish-step"}], None, "", cut.dropped)


def _cut_call(part: _Part) -> Event:
    return {
        "type": "tool-input-error",
        "toolCallId": part.id,
        "toolName": part.tool_name,
        "input": _input(part.text),
        "errorText": CUT_TOOL,
    }


def partial_turn(events: Sequence[Event], dropped: set[str]) -> list[dict[str, Any]]:
    """The partial assistant turn to send back: the step's content without what was cut
    (unsigned thinking, cut tool calls)."""
    folding = ContentFold()
    for e in events:
        if str(e.get("id") or e.get("toolCallId")) not in dropped:
            folding.feed(e)
    return [b for b in folding.result() if not (b["type"] == "thinking" and not b["signature"])]


def continuation_request(request: dict[str, Any], turn: list[dict[str, Any]]) -> dict[str, Any]:
    """``request`` (the step's, with its messages) followed by the partial assistant turn
    and the synthetic user turn asking the model to go on; ``_continue`` tells a provider
    that can continue the assistant's last message itself (``continue_final_message``)
    that the last turn is that request."""
    if not turn:
        return request
    base = request.get("messages") or [{"role": "user", "content": request["prompt"]}]
    ask = {"role": "user", "content": [{"type": "text", "text": CONTINUE_PROMPT}]}
    rest = {k: v for k, v in request.items() if k != "prompt"}
    messages = [*base, {"role": "assistant", "content": turn}, ask]
    return {**rest, "messages": messages, "_continue": True}


__all__ = [
    "CONTINUE_PROMPT",
    "CUT_TOOL",
    "LOST_RUN",
    "NOTICE",
    "RESTARTED_STEP",
    "Cut",
    "continuation_request",
    "partial_turn",
    "plan_cut",
    "plan_restart",
]
