"""The chat request (``POST /v1/chat``, the AI SDK's ``DefaultChatTransport``): its body
checked, and its UI messages converted to a generation request. Pure: no I/O.

The body is ``{id, messages, trigger, messageId?, ...}``: ``messages`` is the whole chat
as the client holds it (``UIMessage[]``), and the other fields are the generation's own
parameters (``model``, ``tools``, ``thinking``, ...), which an app sets with the
transport's ``body`` option. The conversion follows the AI SDK's own
(``convertToModelMessages``, then its Anthropic provider's prompt conversion):

- ``system`` messages become ``system`` text blocks;
- a user's ``text`` parts are text blocks, its ``file`` parts images (``image/*``) or
  documents (``application/pdf``; ``text/plain`` as a text source);
- an assistant message is split at each ``step-start``: each step is an assistant turn
  (signed reasoning as ``thinking``, redacted reasoning as ``redacted_thinking``, text,
  tool calls as ``tool_use``) followed by a user turn with the step's tool results;
- ``data-*`` parts, sources, an answer's files and ``custom`` parts, unsigned reasoning
  and calls still streaming are left out,
  but for ``data-steer`` (a message that steered the answer at that step): its text goes
  with the step's tool results, as the worker sent it, and the user message of the same
  id is not sent again.

Consecutive turns of one role are merged, as Anthropic's turns alternate. The result is
then checked like any generation request (``request.validate_request``).
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from broadcaster.core import names
from broadcaster.generations.chat_turns import assemble, with_system
from broadcaster.generations.request import (
    Defaults,
    GenerationOptions,
    RequestInvalid,
    validate_request,
)

_TOOL_CALLED = frozenset(
    {
        "input-available",
        "approval-requested",
        "approval-responded",
        "output-available",
        "output-error",
        "output-denied",
    }
)
"""Tool part states whose call is complete: sent back as ``tool_use``."""

_DENIED = "Tool call execution denied."

NOTHING_TO_SEND = "no user or assistant content"
"""Why a chat converts to no model request at all (a seed may hold such a chat)."""

_ASSISTANT_KEPT_BACK = frozenset({"file", "reasoning-file", "custom"})
"""An answer's parts the history keeps but the model is not sent back: files it made
(Anthropic takes none in an assistant turn) and provider-specific content."""


class UIPart(BaseModel):
    """One part of a UI message: a ``type``; the rest depends on it (fields a newer AI
    SDK adds are let through)."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: str = Field(min_length=1, max_length=200)


class UIMessage(BaseModel):
    """A UI message of the AI SDK (``UIMessage``)."""

    model_config = ConfigDict(extra="allow", strict=True)
    id: str = Field(min_length=1, max_length=256)
    role: Literal["system", "user", "assistant"]
    parts: list[UIPart]


GENERATION_FIELDS = frozenset(GenerationOptions.model_fields)
"""Fields of a chat body passed on to the generation request (checked again there)."""


class ChatBody(GenerationOptions):
    """``POST /v1/chat``: what the AI SDK's ``DefaultChatTransport`` sends
    (``WorkflowChatTransport`` sends ``messages`` and the app's ``body``), and the
    generation's options, which an app sets with the transport's ``body``."""

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)
    id: str = Field(default_factory=names.new_id, pattern=names.STREAM_ID_PATTERN)
    """The chat (without ``id`` or ``chatId``, the server names a new one)."""
    chatId: str | None = Field(None, pattern=names.STREAM_ID_PATTERN)
    """The chat, as an app's ``body`` may name it for ``WorkflowChatTransport``: read when
    there is no ``id``."""
    messages: list[UIMessage] = Field(min_length=1)
    """The whole chat as the client holds it, oldest first."""
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: str | None = Field(None, max_length=256)
    multitask: Literal["reject", "enqueue", "interrupt", "steer"] | None = None
    """What a message sent while the chat's answer runs does (docs/api/chat.md)."""
    _options: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _named(cls, data: Any, handler: ModelWrapValidatorHandler[ChatBody]) -> ChatBody:
        """The chat ``chatId`` names when there is no ``id``; the generation's options
        kept as sent, for its request (``options``)."""
        if isinstance(data, dict) and "id" not in data and data.get("chatId") is not None:
            data = {**data, "id": data["chatId"]}
        chat = handler(data)
        if isinstance(data, dict):
            chat._options = {k: v for k, v in data.items() if k in GENERATION_FIELDS}
        return chat

    @property
    def options(self) -> dict[str, Any]:
        """The generation's options as the body gave them (the request keeps them so)."""
        return self._options


RUN_SEPARATOR = names.RUN_SEPARATOR
"""Between the parts of a run id: not in the id alphabet ``[A-Za-z0-9_-]``, and left as
is by ``encodeURIComponent``."""


def run_id(chat_id: str, generation: str, base: int) -> str:
    """The ``x-workflow-run-id`` of a chat answer: the chat, the generation the answer
    streams, and how many of its events came before the answer's first chunk."""
    return RUN_SEPARATOR.join((chat_id, generation, str(base)))


parse_run_id = names.parse_run_id
"""``(chat, generation, base)`` of a run id; None if it is not one."""


def chunk_window(base: int, last_seq: int, start_index: int) -> int:
    """The seq after which a run's stream resumes for ``startIndex``: chunk ``i`` of the
    run is event ``base + i + 1`` of its generation; a negative index counts from the
    run's tail (``-k``: its last ``k`` chunks), never before the run's first chunk."""
    if start_index >= 0:
        return base + start_index
    return max(base, last_seq + start_index)


def with_chat_id(body: Any, new_id: Callable[[], str]) -> dict[str, Any]:
    """The submit's body with its chat id in ``id`` (``DefaultChatTransport`` sends
    ``id``; ``WorkflowChatTransport`` sends none unless the app puts ``id`` or ``chatId``
    in its ``body``: then ``new_id()``), before the rest is checked (access first); or
    ``RequestInvalid``."""
    if not isinstance(body, dict):
        raise RequestInvalid(
            "the body must be a JSON object", [{"loc": [], "msg": "not an object"}]
        )
    found: dict[str, Any] = dict(body)
    if "id" not in found:
        given = found.get("chatId")
        found["id"] = new_id() if given is None else given
    chat_id = found["id"]
    if not names.is_chat_id(chat_id):
        raise RequestInvalid(
            f"id: the chat id must be a string matching {names.STREAM_ID_PATTERN}",
            [{"loc": ["id"], "msg": "not a chat id"}],
        )
    return found


def count_messages(body: dict[str, Any], limit: int) -> None:
    """``TooManyMessages`` when the body holds more than ``limit`` messages: checked
    before any of them is, so a body of many small messages costs its parse alone."""
    messages = body.get("messages")
    if isinstance(messages, list) and len(messages) > limit:
        raise TooManyMessages(
            f"messages: at most {limit} a request, got {len(messages)}",
            [{"loc": ["messages"], "msg": f"more than {limit} messages"}],
        )


class TooManyMessages(RequestInvalid):
    """A body of more messages than the deployment allows (``chat_max_messages``)."""


def parse_body(body: Any) -> ChatBody:
    """The chat body, or ``RequestInvalid`` naming each wrong field. Each message is
    checked on its own, so that no one call takes long (``http/offloop.py``)."""
    if not isinstance(body, dict):
        raise RequestInvalid(
            "the body must be a JSON object", [{"loc": [], "msg": "not an object"}]
        )
    unknown = sorted(set(body) - set(ChatBody.model_fields))
    if unknown:
        raise RequestInvalid(
            "unknown fields: " + ", ".join(unknown),
            [{"loc": [name], "msg": "unknown field"} for name in unknown],
        )
    details: list[dict[str, Any]] = []
    given = body.get("messages")
    messages: Any = given
    if isinstance(given, list):
        messages = []
        for m, message in enumerate(given):
            try:
                messages.append(UIMessage.model_validate(message))
            except ValidationError as exc:
                details += _details(exc, ["messages", m])
    try:
        chat = ChatBody.model_validate({**body, "messages": messages})
    except ValidationError as exc:
        details += _details(exc, [])
    if details:
        shown = "; ".join(f"{_dotted(d['loc'])}: {d['msg']}" for d in details[:3])
        raise RequestInvalid(f"invalid chat request: {shown}"[:1000], details)
    return chat


def _details(exc: ValidationError, at: list[str | int]) -> list[dict[str, Any]]:
    return [
        {"loc": [*at, *e["loc"]], "msg": e["msg"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def _dotted(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def approval_responses(chat: ChatBody) -> list[tuple[str, bool, str | None]]:
    """The decisions a submit carries: ``(approval id, approved, reason)`` of each tool
    part of its last message, if that is the assistant's, in state ``approval-responded``
    (``addToolApprovalResponse``)."""
    last = chat.messages[-1]
    if last.role != "assistant":
        return []
    found = []
    for part in last.parts:
        extra = part.model_extra or {}
        approval = extra.get("approval")
        if extra.get("state") != "approval-responded" or not isinstance(approval, dict):
            continue
        approval_id, approved = approval.get("id"), approval.get("approved")
        if isinstance(approval_id, str) and isinstance(approved, bool):
            reason = approval.get("reason")
            found.append((approval_id, approved, reason if isinstance(reason, str) else None))
    return found


def response_message_id(messages: list[UIMessage], new_id: str) -> str:
    """The id of the assistant message the generation writes: the last message's when it
    is the assistant's (the client continues it, after its tool results), else new."""
    last = messages[-1]
    return last.id if last.role == "assistant" else new_id


def model_entry(m: int, message: UIMessage) -> dict[str, Any]:
    """One UI message's model turns, as the chat's record keeps them beside it
    (``generations.chat_turns``): converted on its own, ``m`` its index for errors."""
    entry: dict[str, Any] = {"i": message.id, "r": message.role}
    if message.role == "system":
        entry["s"] = _system_text(m, message)
    elif message.role == "user":
        entry["t"] = [["user", _user_blocks(m, message)]]
    else:
        entry["t"] = [list(turn) for turn in _assistant_turns(m, message)]
        steers = [
            str((part.model_extra or {}).get("id"))
            for part in message.parts
            if part.type == "data-steer"
        ]
        if steers:
            entry["d"] = steers
    return entry


def generation_body(chat: ChatBody) -> dict[str, Any]:
    """The generation request (``POST /v1/generations``'s body) for a chat body; not yet
    checked (``to_request`` checks it). Each message converted on its own
    (``model_entry``), then joined as the worker joins a record's (``assemble``)."""
    extra = chat.options
    # System messages first: their errors are the ones a body with several shows.
    for m, message in enumerate(chat.messages):
        if message.role == "system":
            _system_text(m, message)
    merged, system = assemble([model_entry(m, msg) for m, msg in enumerate(chat.messages)])
    if not merged:
        raise RequestInvalid(
            "the messages hold nothing to send to the model",
            [{"loc": ["messages"], "msg": NOTHING_TO_SEND}],
        )
    body: dict[str, Any] = {**extra, "messages": merged}
    if system:
        body["system"] = with_system(extra.get("system"), system)
    return body


def to_request(chat: ChatBody, defaults: Defaults) -> dict[str, Any]:
    """The stored generation request for a chat body, or ``RequestInvalid``."""
    body = generation_body(chat)
    try:
        return validate_request(body, defaults)
    except RequestInvalid as exc:
        raise RequestInvalid(
            f"the messages convert to an invalid model request: {exc.message}"[:1000],
            exc.details,
        ) from None


RESULT_STATES = frozenset({"output-available", "output-error", "output-denied"})
"""Tool part states that carry a result: what a client may claim a call returned."""
RECORDED_TYPES = frozenset(
    {"tool-approval-request", "tool-output-available", "tool-output-error", "tool-output-denied"}
)
"""The chunks by which a chat's answer records a call's approval and result."""


class NotRecorded(RequestInvalid):
    """A submit claims a result for a tool call that waits on an approval: the worker runs
    it once approved, so no client-supplied result stands for it (409)."""


def claimed_results(chat: ChatBody) -> set[str]:
    """The tool calls whose results the submit's assistant messages carry."""
    return {
        str((part.model_extra or {}).get("toolCallId"))
        for message in chat.messages
        if message.role == "assistant"
        for part in message.parts
        if (part.model_extra or {}).get("state") in RESULT_STATES
    }


def from_record(chat: ChatBody, recorded: dict[str, dict[str, Any]]) -> None:
    """Tool results from the chat's record, not the client: each call of ``recorded``
    (its chunks as the answer wrote them, by ``toolCallId``) that has a result there gets
    that result in place of what the client sent; a call the record shows waiting on an
    approval with no result is ``NotRecorded``. Calls the record does not know (the
    client's own tools) keep what the client sent."""
    for message in chat.messages:
        if message.role != "assistant":
            continue
        for part in message.parts:
            extra = part.model_extra
            found = recorded.get(str((extra or {}).get("toolCallId")))
            if extra is None or found is None or extra.get("state") not in RESULT_STATES:
                continue
            _recorded_result(extra, found)


def _recorded_result(extra: dict[str, Any], found: dict[str, Any]) -> None:
    kind = found["type"]
    if kind == "tool-approval-request":
        raise NotRecorded(
            f"tool call {extra.get('toolCallId')!r} waits on an approval: its result is the "
            "server's to record, not the client's to send",
            [{"loc": ["messages"], "msg": "a result the chat's record does not hold"}],
        )
    for name in ("output", "errorText"):
        extra.pop(name, None)
    if kind == "tool-output-available":
        extra |= {"state": "output-available", "output": found.get("output")}
    elif kind == "tool-output-error":
        extra |= {"state": "output-error", "errorText": found.get("errorText")}
    else:
        extra["state"] = "output-denied"


def convert(chat: ChatBody, defaults: Defaults) -> dict[str, Any] | None:
    """The generation request of a checked body (``parse_body``; its tool results taken
    from the record, ``from_record``), unless it decides on tool calls
    (``approval_responses``): then None. All of a submit's conversion, with no I/O: one
    call for a thread (``http/offloop.py``)."""
    return None if approval_responses(chat) else to_request(chat, defaults)


def _invalid(loc: list[str | int], msg: str) -> RequestInvalid:
    return RequestInvalid(f"{_dotted(loc)}: {msg}"[:1000], [{"loc": loc, "msg": msg}])


def _text(loc: list[str | int], part: UIPart) -> str:
    text = (part.model_extra or {}).get("text")
    if not isinstance(text, str):
        raise _invalid([*loc, "text"], "a text part needs a string 'text'")
    return text


def _system_text(m: int, message: UIMessage) -> str:
    texts = []
    for p, part in enumerate(message.parts):
        loc: list[str | int] = ["messages", m, "parts", p]
        if part.type != "text":
            raise _invalid([*loc, "type"], "a system message holds only text parts")
        texts.append(_text(loc, part))
    return "".join(texts)


def _skipped(kind: str) -> bool:
    """Parts the model never sees: app data, sources, step markers."""
    return kind.startswith("data-") or kind in ("step-start", "source-url", "source-document")


def _user_blocks(m: int, message: UIMessage) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for p, part in enumerate(message.parts):
        loc: list[str | int] = ["messages", m, "parts", p]
        if part.type == "text":
            if text := _text(loc, part):
                blocks.append({"type": "text", "text": text})
        elif part.type == "file":
            blocks.append(file_block(loc, part.model_extra or {}))
        elif not _skipped(part.type):
            raise _invalid([*loc, "type"], f"a user message cannot hold a {part.type!r} part")
    return blocks


def _data_url(url: str) -> tuple[str, bytes] | None:
    """``(media type, bytes)`` of a ``data:`` URL; None for any other URL."""
    if not url.startswith("data:"):
        return None
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise ValueError("a data URL needs a ','")
    if header.endswith(";base64"):
        try:
            return header.removesuffix(";base64"), base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the data URL's base64 is invalid") from None
    return header, urllib.parse.unquote_to_bytes(payload)


def file_block(loc: list[str | int], part: dict[str, Any]) -> dict[str, Any]:
    """A ``file`` part as an image or document block (422 for any other media type)."""
    media, url = part.get("mediaType"), part.get("url")
    if not isinstance(media, str) or not isinstance(url, str):
        raise _invalid(loc, "a file part needs string 'mediaType' and 'url'")
    try:
        data = _data_url(url)
    except ValueError as exc:
        raise _invalid([*loc, "url"], str(exc)) from None
    if media == "text/plain":
        if data is None:
            raise _invalid([*loc, "url"], "a text/plain file must be a data: URL")
        try:
            text = data[1].decode()
        except UnicodeDecodeError:
            raise _invalid([*loc, "url"], "a text/plain file must be UTF-8") from None
        source: dict[str, Any] = {"type": "text", "media_type": "text/plain", "data": text}
        return _document(source, part)
    if media.startswith("image/") or media == "application/pdf":
        if data is None:
            source = {"type": "url", "url": url}
        else:
            encoded = base64.b64encode(data[1]).decode()
            source = {"type": "base64", "media_type": media, "data": encoded}
        return (
            _document(source, part)
            if media == "application/pdf"
            else {
                "type": "image",
                "source": source,
            }
        )
    raise _invalid(
        [*loc, "mediaType"],
        f"files of type {media!r} cannot be sent (image/*, application/pdf, text/plain)",
    )


def _document(source: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "document", "source": source}
    if isinstance(part.get("filename"), str):
        block["title"] = part["filename"]
    return block


def _assistant_turns(m: int, message: UIMessage) -> list[tuple[str, list[dict[str, Any]]]]:
    """Each step of an assistant message: its turn, then a user turn of its results."""
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    said: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for p, part in enumerate(message.parts):
        loc: list[str | int] = ["messages", m, "parts", p]
        if part.type == "step-start" and (said or results):
            turns += [("assistant", said), ("user", results)]
            said, results = [], []
        elif part.type == "text":
            if text := _text(loc, part):
                said.append({"type": "text", "text": text})
        elif part.type == "reasoning":
            said += _reasoning(loc, part)
        elif part.type == "dynamic-tool" or part.type.startswith("tool-"):
            call, result = tool_blocks(loc, part)
            said += call
            results += result
        elif part.type == "data-steer":
            data = (part.model_extra or {}).get("data")
            if isinstance(data, dict) and isinstance(data.get("text"), str) and data["text"]:
                results.append({"type": "text", "text": data["text"]})
        elif not _skipped(part.type) and part.type not in _ASSISTANT_KEPT_BACK:
            raise _invalid([*loc, "type"], f"an assistant message cannot hold a {part.type!r} part")
    return [*turns, ("assistant", said), ("user", results)]


def _reasoning(loc: list[str | int], part: UIPart) -> list[dict[str, Any]]:
    """Signed reasoning as ``thinking``, redacted as ``redacted_thinking``; reasoning
    without Anthropic's metadata is dropped (Anthropic refuses unsigned thinking)."""
    extra = part.model_extra or {}
    meta = extra.get("providerMetadata")
    anthropic = meta.get("anthropic") if isinstance(meta, dict) else None
    if not isinstance(anthropic, dict):
        return []
    if isinstance(anthropic.get("redactedData"), str):
        return [{"type": "redacted_thinking", "data": anthropic["redactedData"]}]
    if isinstance(anthropic.get("signature"), str):
        return [
            {"type": "thinking", "thinking": _text(loc, part), "signature": anthropic["signature"]}
        ]
    return []


def tool_blocks(
    loc: list[str | int], part: UIPart
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A tool part as ``([tool_use], [tool_result])``, each empty when it has none."""
    extra = part.model_extra or {}
    state, call_id = extra.get("state"), extra.get("toolCallId")
    if not isinstance(state, str) or not isinstance(call_id, str):
        raise _invalid(loc, "a tool part needs string 'state' and 'toolCallId'")
    name = extra.get("toolName") if part.type == "dynamic-tool" else part.type[5:]
    if not isinstance(name, str) or not name:
        raise _invalid([*loc, "toolName"], "a dynamic-tool part needs a 'toolName'")
    # A call still streaming is not a call yet; one the provider ran itself has its
    # result in the provider's own blocks, which a UI message does not keep.
    if state not in _TOOL_CALLED or extra.get("providerExecuted"):
        return [], []
    given = extra.get("input")
    call = {
        "type": "tool_use",
        "id": call_id,
        "name": name,
        "input": given if isinstance(given, dict) else {},
    }
    return [call], _tool_result(call_id, state, extra)


def _tool_result(call_id: str, state: str, extra: dict[str, Any]) -> list[dict[str, Any]]:
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if state == "output-available":
        output = extra.get("output")
        result["content"] = (
            output
            if isinstance(output, str)
            else json.dumps(output, ensure_ascii=False, separators=(",", ":"))
        )
    elif state == "output-error":
        result |= {"content": str(extra.get("errorText") or "tool error"), "is_error": True}
    elif state == "output-denied":
        approval = extra.get("approval")
        reason = approval.get("reason") if isinstance(approval, dict) else None
        result["content"] = reason if isinstance(reason, str) and reason else _DENIED
    else:
        return []
    return [result]
