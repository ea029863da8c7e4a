"""A thread's history as AG-UI messages, for the ``MESSAGES_SNAPSHOT`` that opens a run
or a ``connect``: pure, no I/O.

Two sources, in this order: the UI messages the chat's latest answer was submitted with
(``from_ui``), then what that answer had said before the point where the stream starts
(``Transcript``, folded from the AG-UI events the mapping makes of its chunks, so the ids
are those the stream goes on with: a text message re-opened by the prelude is the
snapshot's message, and its next content extends it). What the client applies is what
``@ag-ui/client`` does with the same events: a text message per ``TEXT_MESSAGE_START``, a
tool call on an assistant message named by the call (no ``parentMessageId``), a tool
message after it per ``TOOL_CALL_RESULT``. Reasoning is not in the snapshot (the client
keeps the reasoning messages it has when a snapshot carries none).
"""

from __future__ import annotations

import json
from typing import Any

AgEvent = dict[str, Any]
AgMessage = dict[str, Any]

_ROLES = {"user": "user", "system": "system", "developer": "developer", "assistant": "assistant"}


def snapshot(messages: list[AgMessage]) -> AgEvent:
    return {"type": "MESSAGES_SNAPSHOT", "messages": messages}


def from_ui(messages: list[dict[str, Any]]) -> list[AgMessage]:
    """The AI SDK's UI messages as AG-UI messages: a user's or system's text; an
    assistant's steps (split at ``step-start``), each an assistant message of its text
    and tool calls (the first step's id the message's, the next ``<id>:<n>``), then a
    tool message per call with a result (id ``<message id>.<toolCallId>``). Reasoning,
    files and data parts are left out."""
    out: list[AgMessage] = []
    for m in messages:
        role = _ROLES.get(str(m.get("role")))
        given = m.get("parts")
        parts: list[Any] = given if isinstance(given, list) else []
        mid = str(m.get("id") or "")
        if role is None or not mid:
            continue
        if role != "assistant":
            out.append({"id": mid, "role": role, "content": _joined(parts)})
            continue
        if any(_agui(p) for p in parts):
            out += _as_sent(mid, parts)
            continue
        for n, step in enumerate(_steps(parts)):
            calls, results = _tool_parts(mid, step)
            text = _joined(step)
            if not text and not calls:
                continue
            said: AgMessage = {"id": mid if n == 0 else f"{mid}:{n}", "role": "assistant"}
            if text:
                said["content"] = text
            if calls:
                said["toolCalls"] = calls
            out += [said, *results]
    return out


def _agui(part: Any) -> dict[str, Any] | None:
    """The AG-UI ids a part was sent with (``runs.chat_body`` keeps them)."""
    if not isinstance(part, dict):
        return None
    meta = part.get("providerMetadata") or part.get("callProviderMetadata")
    found = meta.get("agui") if isinstance(meta, dict) else None
    return found if isinstance(found, dict) and found.get("messageId") else None


def _as_sent(mid: str, parts: list[Any]) -> list[AgMessage]:
    """An answer sent as AG-UI messages, as it was sent: each part back in the message
    it came from, each tool result after the message of its call."""
    said: dict[str, AgMessage] = {}
    results: dict[str, list[AgMessage]] = {}
    for p in parts:
        kind = str(p.get("type", "")) if isinstance(p, dict) else ""
        if kind != "text" and not kind.startswith(("tool-", "dynamic-tool")):
            continue
        ids = _agui(p) or {"messageId": mid}
        name = str(ids["messageId"])
        message = said.setdefault(name, {"id": name, "role": "assistant"})
        if p.get("type") == "text":
            message["content"] = str(message.get("content") or "") + str(p.get("text", ""))
            continue
        calls, made = _tool_parts(mid, [p])
        message.setdefault("toolCalls", []).extend(calls)
        for result in made:
            result["id"] = str(ids.get("resultId") or result["id"])
            results.setdefault(name, []).append(result)
    out: list[AgMessage] = []
    for name, message in said.items():
        if message.get("content") or message.get("toolCalls"):
            out += [message, *results.get(name, [])]
    return out


def _joined(parts: list[Any]) -> str:
    return "".join(
        str(p.get("text", "")) for p in parts if isinstance(p, dict) and p.get("type") == "text"
    )


def _steps(parts: list[Any]) -> list[list[Any]]:
    steps: list[list[Any]] = [[]]
    for p in parts:
        if isinstance(p, dict) and p.get("type") == "step-start":
            if steps[-1]:
                steps.append([])
        else:
            steps[-1].append(p)
    return steps


def _tool_parts(mid: str, parts: list[Any]) -> tuple[list[AgMessage], list[AgMessage]]:
    calls: list[AgMessage] = []
    results: list[AgMessage] = []
    for p in parts:
        if not isinstance(p, dict) or not str(p.get("type", "")).startswith(
            ("tool-", "dynamic-tool")
        ):
            continue
        call = str(p.get("toolCallId"))
        kind = str(p["type"])
        name = str(p.get("toolName")) if kind == "dynamic-tool" else kind[len("tool-") :]
        args = _json(p.get("input") if p.get("input") is not None else {})
        calls.append(
            {"id": call, "type": "function", "function": {"name": name, "arguments": args}}
        )
        state = p.get("state")
        if state == "output-available":
            content = _json(p.get("output"))
        elif state == "output-error":
            content = _json({"error": p.get("errorText")})
        elif state == "output-denied":
            content = _json({"denied": True})
        else:
            continue
        results.append(
            {"id": f"{mid}.{call}", "role": "tool", "toolCallId": call, "content": content}
        )
    return calls, results


class Transcript:
    """AG-UI messages folded from AG-UI events, as ``@ag-ui/client`` applies them."""

    def __init__(self, start: list[AgMessage] | None = None) -> None:
        self.messages: list[AgMessage] = list(start or [])
        self._by_id: dict[str, AgMessage] = {m["id"]: m for m in self.messages}
        self._calls: dict[str, AgMessage] = {
            c["id"]: c for m in self.messages for c in m.get("toolCalls", [])
        }
        """A tool call's id -> the call (its ``function.arguments`` grows)."""

    def feed(self, event: AgEvent) -> None:
        kind = event.get("type")
        if kind == "TEXT_MESSAGE_START":
            mid = str(event["messageId"])
            if mid not in self._by_id:
                self._add({"id": mid, "role": event.get("role", "assistant"), "content": ""})
        elif kind == "TEXT_MESSAGE_CONTENT":
            found = self._by_id.get(str(event["messageId"]))
            if found is not None:
                found["content"] = str(found.get("content") or "") + str(event["delta"])
        elif kind == "TOOL_CALL_START":
            parent = event.get("parentMessageId")
            self._call(str(event["toolCallId"]), str(event["toolCallName"]), parent)
        elif kind == "TOOL_CALL_ARGS":
            call = self._calls.get(str(event["toolCallId"]))
            if call is not None:
                call["function"]["arguments"] += str(event["delta"])
        elif kind == "TOOL_CALL_RESULT":
            self._result(event)

    def _add(self, message: AgMessage, at: int | None = None) -> None:
        if at is None:
            self.messages.append(message)
        else:
            self.messages.insert(at, message)
        self._by_id[message["id"]] = message

    def _call(self, call_id: str, name: str, parent: Any) -> None:
        """As the client: on the assistant message ``parent`` names (made when missing);
        on one of its own (id the call's) when there is no parent, or it is no
        assistant's."""
        if call_id in self._calls:
            return
        holder = self._by_id.get(str(parent)) if parent else None
        if holder is None or holder.get("role") != "assistant":
            named = str(parent) if parent and holder is None else call_id
            holder = {"id": named, "role": "assistant", "toolCalls": []}
            self._add(holder)
        call: AgMessage = {
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        holder.setdefault("toolCalls", []).append(call)
        self._calls[call_id] = call

    def _result(self, event: AgEvent) -> None:
        call = str(event["toolCallId"])
        message = {
            "id": str(event["messageId"]),
            "role": event.get("role") or "tool",
            "toolCallId": call,
            "content": str(event["content"]),
        }
        at = next(
            (
                i
                for i, m in enumerate(self.messages)
                if m.get("role") == "assistant"
                and any(c["id"] == call for c in m.get("toolCalls", []))
            ),
            None,
        )
        if at is None:
            self._add(message)
            return
        at += 1
        while at < len(self.messages) and self.messages[at].get("role") == "tool":
            at += 1
        self._add(message, at)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
