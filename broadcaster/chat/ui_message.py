"""A chat's assistant message folded from its generation's events, as the AI SDK's client
holds it (``processUIMessageStream``): ``step-start`` parts, text and reasoning parts with
their state and ``providerMetadata``, tool parts (``tool-<name>``) with their state, input
and output, ``data-*`` parts, and the message's ``metadata``. Pure.

``GET /v1/chat/{id}/messages`` answers with it, so a page that reloads shows the chat
without a database of its own. A tool call that waits for a person is in state
``approval-requested``; a decision (``data-approval``, transient for the SDK) is kept in
its ``approval``, as the deciding tab holds it.

Three choices differ from a client that read the stream:
``data-retry`` (a worker was lost and another started over, in streams written before
takeovers continued) goes back to the message as it was before the generation, as the
contract asked, rather than keeping both attempts; a step a takeover restarted
(``data-continued`` with ``mode: "restart"``: the cut step's parts closed, then a new
step) is dropped, so the history holds the one answer; and the input of a tool call
still streaming is what parses of it so far (``{}`` until then). A takeover that
continued (``data-continued``, transient) streams into the same parts: nothing to do.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from broadcaster.generations.content import restarts

Part = dict[str, Any]
_MISSING = object()
"""A field the event did not carry (JavaScript's ``undefined``: no key in the JSON)."""


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    """``target[key] = value`` as JavaScript does it: ``undefined`` leaves no key."""
    if value is _MISSING:
        target.pop(key, None)
    else:
        target[key] = value


def merge(base: Any, extra: Any) -> Any:
    """The AI SDK's ``mergeObjects``: objects merged deeply, anything else replaced."""
    if not isinstance(base, dict) or not isinstance(extra, dict):
        return copy.deepcopy(extra)
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if key in out else copy.deepcopy(value)
    return out


class UIMessageFold:
    """The message so far: ``feed`` each event in seq order, then ``message()``."""

    def __init__(self, start: dict[str, Any]) -> None:
        self._start = copy.deepcopy(start)
        self.message: dict[str, Any] = copy.deepcopy(start)
        self.fed = False
        self._open: dict[tuple[str, str], Part] = {}
        self._raw_input: dict[str, str] = {}
        self._step_at = len(self.parts)
        """Where the current step's parts begin (its ``step-start``)."""

    @property
    def parts(self) -> list[Part]:
        parts: list[Part] = self.message["parts"]
        return parts

    def feed(self, event: dict[str, Any]) -> None:
        self.fed = True
        kind = str(event.get("type"))
        if kind == "data-retry":
            self.message = copy.deepcopy(self._start)
            self._open.clear()
            self._raw_input.clear()
            self._step_at = len(self.parts)
        elif kind in ("start", "finish", "message-metadata"):
            self._meta(kind, event)
        elif kind == "start-step":
            self._step_at = len(self.parts)
            self.parts.append({"type": "step-start"})
        elif kind == "data-continued" and restarts(event):
            del self.parts[self._step_at :]
            self._open.clear()
        elif kind == "finish-step":
            self._open.clear()
        elif kind.startswith(("text-", "reasoning-")):
            self._span(kind, event)
        elif kind.startswith("tool-"):
            self._tool(kind, event)
        elif kind == "data-approval":
            self._decision(event.get("data"))
        elif kind.startswith("data-") and not event.get("transient"):
            self._data(event)

    def _meta(self, kind: str, event: dict[str, Any]) -> None:
        if kind == "start" and isinstance(event.get("messageId"), str):
            self.message["id"] = event["messageId"]
        meta = event.get("messageMetadata")
        if meta is not None:
            old = self.message.get("metadata")
            self.message["metadata"] = merge(old, meta) if old is not None else meta

    def _span(self, kind: str, event: dict[str, Any]) -> None:
        """Text and reasoning parts: ``-start`` opens one, ``-delta`` grows it, ``-end``
        closes it; each may bring ``providerMetadata``."""
        family, _, step = kind.partition("-")
        key = (family, str(event.get("id")))
        meta = event.get("providerMetadata", _MISSING)
        if step == "start":
            part: Part = {"type": family, "text": "", "state": "streaming"}
            if family == "reasoning":
                part["id"] = event.get("id")
            _put(part, "providerMetadata", meta)
            self._open[key] = part
            self.parts.append(part)
            return
        found = self._open.get(key)
        if found is None:
            return
        if step == "delta" and isinstance(event.get("delta"), str):
            found["text"] += event["delta"]
        if meta is not _MISSING and meta is not None:
            found["providerMetadata"] = meta
        if step == "end":
            found["state"] = "done"
            del self._open[key]

    def _data(self, event: dict[str, Any]) -> None:
        same = [
            p
            for p in self.parts
            if "id" in event and p.get("type") == event["type"] and p.get("id") == event["id"]
        ]
        if same:
            same[0]["data"] = event.get("data")
        else:
            self.parts.append(dict(event))

    def _tool(self, kind: str, event: dict[str, Any]) -> None:
        call_id = str(event.get("toolCallId"))
        if kind == "tool-input-start":
            part: Part = {
                "type": f"tool-{event.get('toolName')}",
                "toolCallId": call_id,
                "state": "input-streaming",
            }
            _put(part, "providerExecuted", event.get("providerExecuted", _MISSING))
            self._raw_input[call_id] = ""
            self.parts.append(part)
            return
        found = self._find_tool(call_id)
        if found is None:
            return
        if kind == "tool-input-delta":
            self._raw_input[call_id] = self._raw_input.get(call_id, "") + str(
                event.get("inputTextDelta", "")
            )
            found["input"] = _partial(self._raw_input[call_id])
            found["rawInput"] = self._raw_input[call_id]
        elif kind == "tool-input-available":
            self._state(found, "input-available", event, input=event.get("input", _MISSING))
        elif kind == "tool-output-available":
            output = event.get("output", _MISSING)
            self._state(found, "output-available", event, output=output)
            _put(found, "preliminary", event.get("preliminary", _MISSING))
        elif kind == "tool-output-error":
            raw = found.get("rawInput", _MISSING)
            self._state(found, "output-error", event, errorText=event.get("errorText"))
            _put(found, "rawInput", raw)
        elif kind == "tool-output-denied":
            found["state"] = "output-denied"
        elif kind == "tool-approval-request":
            found["state"] = "approval-requested"
            found["approval"] = {"id": event.get("approvalId")}

    def _decision(self, data: Any) -> None:
        """A decision on an approval (transient for the AI SDK, which learns of it from
        the output that follows): the tool part's ``approval`` as the deciding tab's
        ``addToolApprovalResponse`` leaves it, so the history says who decided what."""
        if not isinstance(data, dict):
            return
        found = self._find_tool(str(data.get("toolCallId")))
        if found is None:
            return
        approval = {"id": data.get("approvalId"), "approved": bool(data.get("approved"))}
        if isinstance(data.get("reason"), str):
            approval["reason"] = data["reason"]
        found["approval"] = approval
        if found.get("state") == "approval-requested":
            found["state"] = "approval-responded"

    def _state(self, part: Part, state: str, event: dict[str, Any], **fields: Any) -> None:
        # The AI SDK rebuilds the part from the fields of its new state: the others go.
        for key in ("output", "errorText", "rawInput", "preliminary"):
            part.pop(key, None)
        part["state"] = state
        for key, value in fields.items():
            _put(part, key, value)
        if "providerExecuted" in event:
            part["providerExecuted"] = event["providerExecuted"]
        meta = event.get("providerMetadata")
        if meta is not None:
            result = state in ("output-available", "output-error")
            part["resultProviderMetadata" if result else "callProviderMetadata"] = meta

    def _find_tool(self, call_id: str) -> Part | None:
        for part in reversed(self.parts):
            if str(part.get("type", "")).startswith("tool-") and part.get("toolCallId") == call_id:
                return part
        return None


def _partial(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return {}


class ChatMessages:
    """A chat's messages: those submitted, then the assistant message of its latest
    generation's events (``feed`` them in seq order). A generation that continues the
    last submitted message (the same id) extends that message."""

    def __init__(self, submitted: list[dict[str, Any]], message_id: str) -> None:
        last = submitted[-1] if submitted else None
        self.continued = (
            last is not None and last.get("role") == "assistant" and last.get("id") == message_id
        )
        self.history = submitted[:-1] if self.continued else submitted
        start = last if last is not None and self.continued else None
        self.fold = UIMessageFold(start or {"id": message_id, "role": "assistant", "parts": []})

    def feed(self, event: dict[str, Any]) -> None:
        self.fold.feed(event)

    def result(self) -> list[dict[str, Any]]:
        """The messages; the assistant's is left out until its first event."""
        if self.continued or self.fold.fed:
            return [*self.history, self.fold.message]
        return list(self.history)


def chat_messages(
    submitted: list[dict[str, Any]], message_id: str, events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``ChatMessages`` of all these events at once."""
    chat = ChatMessages(submitted, message_id)
    for event in events:
        chat.feed(event)
    return chat.result()
