"""A chat's assistant message folded from its generation's events, as the AI SDK's
``readUIMessageStream`` builds it from the same stream (``processUIMessageStream``), part
for part: ``step-start`` parts, text and reasoning with their state and
``providerMetadata``, tool parts (``tool-<name>`` and ``dynamic-tool``, with ``title``,
``toolMetadata``, the input as it streams, and the provider's metadata), sources
(``source-url``, ``source-document``), files (``file``, ``reasoning-file``), ``custom``
parts, non-transient ``data-*`` parts, and the message's ``metadata``. Pure.

``GET /v1/chat/{id}/messages`` answers with it, so a page that reloads shows what a live
tab showed. The message is the reader's last snapshot: a ``step-start`` that nothing
followed is not in it yet, as the reader writes none for it.

Four choices differ from a client that read the stream: a decision on an approval
(``data-approval``, transient for the SDK) is kept in its tool part's ``approval``, as
the deciding tab holds it; ``data-retry`` (a worker was lost and another started over, in
streams written before takeovers continued) goes back to the message as it was before
the generation; a step a takeover restarted (``data-continued`` with ``mode:
"restart"``) is dropped, so the history holds the one answer; and a chunk the SDK would
refuse (a delta of a part never started, an output of an unknown call) is skipped.
"""

from __future__ import annotations

import copy
from typing import Any

from broadcaster.chat import ui_tools
from broadcaster.chat.partial_json import MISSING, parse_partial
from broadcaster.chat.ui_tools import Part, given, put
from broadcaster.generations.content import restarts

_SPREAD_SKIPPED = ("__proto__", "constructor", "prototype")
_TOOL_CHUNKS = frozenset(
    {
        "tool-input-start",
        "tool-input-delta",
        "tool-input-available",
        "tool-input-error",
        "tool-approval-request",
        "tool-output-denied",
        "tool-output-available",
        "tool-output-error",
    }
)


def _spread(value: Any) -> dict[str, Any]:
    """JavaScript's ``{...value}`` of a JSON value."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list | str):
        return {str(i): item for i, item in enumerate(value)}
    return {}


def merge(base: Any, extra: Any) -> Any:
    """The AI SDK's ``mergeObjects``: objects merged deeply, anything else replaced."""
    out = _spread(base)
    for key, value in _spread(extra).items():
        if key in _SPREAD_SKIPPED:
            continue
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            out[key] = merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class UIMessageFold:
    """The message so far: ``feed`` each event in seq order; ``message`` is the latest
    snapshot (``None`` until the first)."""

    def __init__(self, start: dict[str, Any]) -> None:
        self._start = copy.deepcopy(start)
        self.state: dict[str, Any] = copy.deepcopy(start)
        self.fed = False
        """Whether the reader has written a snapshot (an event changed the message)."""
        self._unwritten = 0
        """``step-start`` parts at the end that no snapshot holds yet."""
        self._text: dict[str, Part] = {}
        self._reasoning: dict[str, Part] = {}
        self._calls: dict[str, dict[str, Any]] = {}
        self._step_at = 0
        self._reset(self.state)

    @property
    def parts(self) -> list[Part]:
        parts: list[Part] = self.state["parts"]
        return parts

    @property
    def message(self) -> dict[str, Any]:
        """The message as the reader's last snapshot holds it."""
        if not self._unwritten:
            return self.state
        return {**self.state, "parts": self.parts[: -self._unwritten]}

    def _reset(self, message: dict[str, Any]) -> None:
        """Start from ``message`` (the SDK's ``createStreamingUIMessageState``): a call
        still streaming in its last step goes on streaming."""
        self.state = message
        self._text, self._reasoning, self._calls = {}, {}, {}
        self._unwritten = 0
        self._step_at = len(self.parts)
        """Where the current step's parts begin (its ``step-start``)."""
        for part in self._step():
            if ui_tools.is_tool(part) and part.get("state") == "input-streaming":
                dynamic = part.get("type") == "dynamic-tool"
                self._calls[str(part.get("toolCallId"))] = {
                    "text": part.get("rawInput") or "",
                    "inputEncoding": part.get("inputEncoding", MISSING),
                    "toolName": part.get("toolName") if dynamic else ui_tools.static_name(part),
                    "dynamic": dynamic,
                    "title": part.get("title", MISSING),
                    "toolMetadata": part.get("toolMetadata", MISSING),
                }

    def _step(self) -> list[Part]:
        """The current step's parts: those after the last ``step-start``."""
        parts = self.parts
        at = len(parts) - 1
        while at >= 0 and parts[at].get("type") != "step-start":
            at -= 1
        return parts[at + 1 :]

    def _write(self) -> None:
        self.fed = True
        self._unwritten = 0

    def feed(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type"))
        if kind == "data-retry":
            self._reset(copy.deepcopy(self._start))
            self._write()
        elif kind == "data-continued" and restarts(event):
            self._restart_step()
        elif kind == "data-approval":
            self._decision(event.get("data"))
        elif kind == "start-step":
            self._step_at = len(self.parts)
            self.parts.append({"type": "step-start"})
            self._unwritten += 1
        elif kind == "finish-step":
            self._text, self._reasoning = {}, {}
        elif kind in ("start", "finish", "message-metadata"):
            self._meta(kind, event)
        elif kind.startswith(("text-", "reasoning-")) and kind != "reasoning-file":
            self._span(kind, event)
        elif kind.startswith("tool-"):
            self._tool(kind, event)
        elif kind.startswith("data-"):
            self._data(event)
        else:
            self._other(kind, event)

    def _restart_step(self) -> None:
        """A takeover restarted the step: its parts, its ``step-start`` included, go."""
        del self.parts[self._step_at :]
        self._text, self._reasoning = {}, {}
        self._write()

    def _meta(self, kind: str, event: dict[str, Any]) -> None:
        given_id = event.get("messageId", MISSING)
        meta = event.get("messageMetadata", MISSING)
        reset = kind == "start" and given(given_id) and given_id != self.state.get("id")
        if reset:
            self._reset({"id": given_id, "role": "assistant", "parts": []})
        if kind == "start" and given(given_id):
            self.state["id"] = given_id
        if given(meta):
            old = self.state.get("metadata")
            self.state["metadata"] = merge(old, meta) if given(old) else copy.deepcopy(meta)
        if reset or given(meta) or (kind == "start" and given(given_id)):
            self._write()

    def _span(self, kind: str, event: dict[str, Any]) -> None:
        """Text and reasoning: ``-start`` opens a part, ``-delta`` grows it, ``-end``
        closes it; each may bring ``providerMetadata``."""
        family, _, step = kind.partition("-")
        active = self._text if family == "text" else self._reasoning
        key = str(event.get("id"))
        meta = event.get("providerMetadata", MISSING)
        if step == "start":
            part: Part = {"type": family, "text": "", "state": "streaming"}
            if family == "reasoning":
                part["id"] = event.get("id")
            put(part, "providerMetadata", meta)
            active[key] = part
            self.parts.append(part)
        elif step in ("delta", "end") and key in active:
            found = active[key]
            if step == "delta":
                found["text"] += str(event.get("delta", ""))
            if given(meta):
                found["providerMetadata"] = meta
            if step == "end":
                found["state"] = "done"
                del active[key]
        else:
            return
        self._write()

    def _other(self, kind: str, event: dict[str, Any]) -> None:
        """Files, sources and custom content: each a part of its own."""
        get = event.get
        part: Part
        if kind in ("file", "reasoning-file"):
            part = {"type": kind, "mediaType": get("mediaType"), "url": get("url")}
            if given(get("providerMetadata", MISSING)):
                part["providerMetadata"] = event["providerMetadata"]
            self.parts.append(part)
        elif kind in ("source-url", "source-document", "custom"):
            fields = {
                "source-url": ("sourceId", "url", "title"),
                "source-document": ("sourceId", "mediaType", "title", "filename"),
                "custom": ("kind",),
            }[kind]
            part = {"type": kind}
            for key in (*fields, "providerMetadata"):
                put(part, key, get(key, MISSING))
            self.parts.append(part)
        else:
            return
        self._write()

    def _data(self, event: dict[str, Any]) -> None:
        """A data part: a transient one is the app's signal, not a part; one with the id
        of an earlier part of its type replaces that part's data."""
        if event.get("transient"):
            return
        part_id = event.get("id", MISSING)
        same = None
        if given(part_id):
            same = next(
                (
                    p
                    for p in self.parts
                    if p.get("type") == event.get("type") and p.get("id", MISSING) == part_id
                ),
                None,
            )
        if same is not None:
            put(same, "data", event.get("data", MISSING))
        else:
            self.parts.append(dict(event))
        self._write()

    def _tool(self, kind: str, event: dict[str, Any]) -> None:
        call_id = str(event.get("toolCallId"))
        if kind not in _TOOL_CHUNKS:
            return
        if kind == "tool-input-start":
            self._input_start(call_id, event)
        elif kind == "tool-input-delta":
            if not self._input_delta(call_id, event):
                return
        elif kind in ("tool-input-available", "tool-input-error"):
            self._input_end(kind, event)
        else:
            found = ui_tools.invocation(self.parts, self._step(), call_id)
            if found is None:
                return
            self._call_event(kind, found, event)
        self._write()

    def _input_start(self, call_id: str, event: dict[str, Any]) -> None:
        get = event.get
        self._calls[call_id] = {
            "text": "",
            "inputEncoding": get("inputEncoding", MISSING),
            "toolName": get("toolName"),
            "dynamic": get("dynamic", MISSING),
            "title": get("title", MISSING),
            "toolMetadata": get("toolMetadata", MISSING),
        }
        fields = ("inputEncoding", "providerExecuted", "title", "toolMetadata")
        options = {key: get(key, MISSING) for key in (*fields, "providerMetadata")}
        options |= {"state": "input-streaming", "toolCallId": call_id}
        options |= {"toolName": get("toolName"), "dynamic": get("dynamic")}
        ui_tools.update(self.parts, self._step(), options, None)

    def _input_delta(self, call_id: str, event: dict[str, Any]) -> bool:
        call = self._calls.get(call_id)
        if call is None:
            return False
        call["text"] += str(event.get("inputTextDelta", ""))
        text = call["text"]
        value = text if call["inputEncoding"] == "text" else parse_partial(text)
        options = {
            "toolCallId": call_id,
            "toolName": call["toolName"],
            "dynamic": call["dynamic"],
            "state": "input-streaming",
            "inputEncoding": call["inputEncoding"],
            "input": value,
            "rawInput": text,
            "title": call["title"],
            "toolMetadata": call["toolMetadata"],
        }
        ui_tools.update(self.parts, self._step(), options, None)
        return True

    def _input_end(self, kind: str, event: dict[str, Any]) -> None:
        get = event.get
        call_id = str(get("toolCallId"))
        fields = ("providerExecuted", "providerMetadata", "toolMetadata")
        options = {key: get(key, MISSING) for key in fields}
        options |= {"toolCallId": call_id, "toolName": get("toolName")}
        if kind == "tool-input-available":
            options |= {"state": "input-available", "input": get("input", MISSING)}
            options |= {"title": get("title", MISSING), "dynamic": get("dynamic")}
            ui_tools.update(self.parts, self._step(), options, None)
            return
        step = self._step()
        existing = next(
            (p for p in step if ui_tools.is_tool(p) and p.get("toolCallId") == call_id), None
        )
        dynamic = existing.get("type") == "dynamic-tool" if existing else bool(get("dynamic"))
        options |= {"state": "output-error", "errorText": get("errorText", MISSING)}
        if dynamic:
            options |= {"input": get("input", MISSING), "dynamic": True}
        else:
            options |= {"rawInput": get("input", MISSING)}
        ui_tools.update(self.parts, step, options, None)

    def _call_event(self, kind: str, found: Part, event: dict[str, Any]) -> None:
        """What follows a call's input: an approval asked, a denial, its output."""
        get = event.get
        if kind == "tool-approval-request":
            approval: dict[str, Any] = {"id": get("approvalId", MISSING)}
            if given(get("approvalDescriptor", MISSING)):
                approval["descriptor"] = event["approvalDescriptor"]
            if "inputSchemaInput" in event:
                approval["inputSchemaInput"] = event["inputSchemaInput"]
            if given(get("signature", MISSING)):
                approval["signature"] = event["signature"]
            found["state"] = "approval-requested"
            found["approval"] = {k: v for k, v in approval.items() if v is not MISSING}
        elif kind == "tool-output-denied":
            found["state"] = "output-denied"
        elif kind in ("tool-output-available", "tool-output-error"):
            self._output(kind, found, event)

    def _output(self, kind: str, found: Part, event: dict[str, Any]) -> None:
        get = event.get
        dynamic = found.get("type") == "dynamic-tool"
        metadata = get("toolMetadata", MISSING)
        options = {
            "toolCallId": get("toolCallId"),
            "toolName": found.get("toolName") if dynamic else ui_tools.static_name(found),
            "dynamic": dynamic,
            "input": found.get("input", MISSING),
            "providerExecuted": get("providerExecuted", MISSING),
            "providerMetadata": get("providerMetadata", MISSING),
            "title": found.get("title", MISSING),
            "toolMetadata": metadata if given(metadata) else found.get("toolMetadata", MISSING),
        }
        if kind == "tool-output-available":
            options |= {"state": "output-available", "output": get("output", MISSING)}
            options["preliminary"] = get("preliminary", MISSING)
        else:
            options |= {"state": "output-error", "errorText": get("errorText", MISSING)}
            if not dynamic:
                options["rawInput"] = found.get("rawInput", MISSING)
        ui_tools.update(self.parts, self._step(), options, found)

    def _decision(self, data: Any) -> None:
        """A decision on an approval (transient for the AI SDK, which learns of it from
        the output that follows): the tool part's ``approval`` as the deciding tab's
        ``addToolApprovalResponse`` leaves it, so the history says who decided what."""
        if not isinstance(data, dict):
            return
        found = ui_tools.invocation(self.parts, self._step(), str(data.get("toolCallId")))
        if found is None:
            return
        approval = {**found.get("approval", {}), "id": data.get("approvalId")}
        approval["approved"] = bool(data.get("approved"))
        if isinstance(data.get("reason"), str):
            approval["reason"] = data["reason"]
        found["approval"] = approval
        if found.get("state") == "approval-requested":
            found["state"] = "approval-responded"
        self._write()


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
        """The messages; the assistant's is left out until its first snapshot."""
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
