"""CopilotKit's runtime requests (``RunAgentInput``) as chat requests: pure, no I/O.

``threadId`` is the chat, ``agentId`` the provider (``default``: the deployment's).
``messages`` become the chat's UI messages as ``useChat`` would send them, one answer's
AG-UI messages one UI message named as the chat named it (``answer_id``). A ``resume``
entry decides the call an interrupt waits on (``resolved`` approves unless its payload
says otherwise, ``cancelled`` denies). The other fields are accepted and unused.
docs/agui.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broadcaster.core import events, names
from broadcaster.generations.request import RequestInvalid

DEFAULT_AGENT = "default"
MAX_MESSAGES = 1000
MAX_RESUME = 64


class AgMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    id: str = Field(min_length=1, max_length=256)
    role: str = Field(min_length=1, max_length=32)
    content: Any = None
    toolCalls: list[dict[str, Any]] | None = None
    toolCallId: str | None = None


class ResumeEntry(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    interruptId: str = Field(min_length=1, max_length=256)
    status: Literal["resolved", "cancelled"]
    payload: Any = None


class RunInput(BaseModel):
    """``RunAgentInput`` as CopilotKit's runtime routes take it."""

    model_config = ConfigDict(extra="allow", strict=True)
    threadId: str = Field(pattern=names.STREAM_ID_PATTERN)
    runId: str = Field(min_length=1, max_length=256)
    messages: list[AgMessage] = Field(default_factory=list, max_length=MAX_MESSAGES)
    resume: list[ResumeEntry] | None = Field(None, max_length=MAX_RESUME)


def parse_input(body: Any) -> RunInput:
    """The run's input, or ``RequestInvalid`` naming each wrong field."""
    if not isinstance(body, dict):
        raise RequestInvalid("the body must be a JSON object (RunAgentInput)", [])
    try:
        return RunInput.model_validate(body)
    except ValidationError as exc:
        details = [
            {"loc": list(e["loc"]), "msg": e["msg"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        shown = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details[:3])
        raise RequestInvalid(f"invalid RunAgentInput: {shown}"[:1000], details) from None


def decisions(run: RunInput) -> list[tuple[str, bool, str | None]]:
    """``(approval id, approved, reason)`` of each ``resume`` entry; ``RequestInvalid``
    for a ``payload.approved`` that is not a JSON boolean (``0`` or ``"no"`` decide
    nothing)."""
    found = []
    for i, entry in enumerate(run.resume or []):
        payload = entry.payload if isinstance(entry.payload, dict) else {}
        given = payload.get("approved", True)
        if not isinstance(given, bool):
            raise RequestInvalid(
                "resume: payload.approved must be true or false",
                [{"loc": ["resume", i, "payload", "approved"], "msg": "not a boolean"}],
            )
        approved = entry.status == "resolved" and given
        reason = payload.get("reason")
        found.append((entry.interruptId, approved, reason if isinstance(reason, str) else None))
    return found


def chat_body(run: RunInput, agent_id: str) -> dict[str, Any]:
    """The ``POST /v1/chat`` body of a run: its thread as UI messages, its provider."""
    results = {m.toolCallId: (m.content, m.id) for m in run.messages if m.role == "tool"}
    messages: list[dict[str, Any]] = []
    answer: dict[str, Any] | None = None
    after_result = False
    for m in run.messages:
        if m.role == "tool":
            after_result = answer is not None
            continue
        if m.role != "assistant":
            answer = None
            parts = _parts(m, results)
            role = "system" if m.role in ("system", "developer") else m.role
            if parts and role in ("system", "user"):
                messages.append({"id": m.id, "role": role, "parts": parts})
            continue
        parts = _parts(m, results)
        if answer is None:
            answer = {"id": m.id, "role": "assistant", "parts": []}
            messages.append(answer)
        elif after_result:
            answer["parts"].append({"type": "step-start"})
        answer["parts"] += parts
        after_result = False
        named = answer_id(m.id)
        if named != m.id and "answer" not in answer:
            answer["answer"] = named
    for said in messages:
        if said["role"] == "assistant":
            said["id"] = said.pop("answer", said["id"])
    body: dict[str, Any] = {
        "id": run.threadId,
        "messages": [m for m in messages if m["parts"]],
    }
    if agent_id != DEFAULT_AGENT:
        body["provider"] = agent_id
    return body


def answer_id(message_id: str) -> str:
    """The UI message id of the answer (assistant and tool messages in a row) an AG-UI
    assistant message belongs to: the first ``<generation>.<seq>`` name among its
    messages (the mapping's), else its first message's id, so a thread sent back names
    the answers the chat's record holds."""
    base, dot, seq = message_id.rpartition(".")
    mapped = dot and base and seq.isascii() and seq.isdigit() and len(seq) <= 12
    return base if mapped else message_id


def _parts(m: AgMessage, results: dict[str | None, tuple[Any, str]]) -> list[dict[str, Any]]:
    """A message's parts; an assistant's keep the AG-UI ids they came with (their
    ``providerMetadata.agui``), so the thread's snapshot gives the client its own."""
    parts: list[dict[str, Any]] = []
    text = _text(m.content)
    if text:
        part: dict[str, Any] = {"type": "text", "text": text}
        if m.role == "assistant":
            part["providerMetadata"] = {"agui": {"messageId": m.id}}
        parts.append(part)
    if m.role != "assistant":
        return parts
    for call in m.toolCalls or []:
        given = call.get("function")
        fn: dict[str, Any] = given if isinstance(given, dict) else {}
        name, call_id = str(fn.get("name") or "tool"), str(call.get("id"))
        meta = {"messageId": m.id}
        part = {
            "type": f"tool-{name}",
            "toolCallId": call_id,
            "input": _loads(fn.get("arguments")),
            "state": "input-available",
        }
        if call_id in results:
            output, meta["resultId"] = results[call_id]
            part |= {"state": "output-available", "output": _loads(output)}
        parts.append(part | {"callProviderMetadata": {"agui": meta}})
    return parts


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _loads(value: Any) -> Any:
    """Tool arguments or content, parsed when they are JSON (kept as text when they are
    not); ``RequestInvalid`` for JSON no provider can be sent (NaN, an infinity, a lone
    surrogate, deeper than the limit)."""
    if not isinstance(value, str):
        return value
    try:
        return events.loads_strict(value)
    except events.InvalidJson as exc:
        if exc.code != "invalid_json":
            raise RequestInvalid(
                f"a tool call's arguments or result: {exc}"[:300],
                [{"loc": ["messages"], "msg": str(exc)[:200]}],
            ) from None
        return value
