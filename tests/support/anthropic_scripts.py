"""The scripts the local Anthropic server plays (``tests/support/fake_anthropic.py``): the
steps of one streamed answer (SSE frames, delays, stalls, gates, errors, a dropped
connection) and the helpers that build a whole message of text, thinking and tool use.
Pure: no I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_MODEL = "claude-fake-1"

# --------------------------------------------------------------------------------------------
# Script steps


@dataclass(frozen=True)
class Frame:
    """One SSE frame: ``event: <event>\\ndata: <json>\\n\\n``."""

    event: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Delay:
    """Sleep between frames (cut short when the client goes away)."""

    seconds: float
    send_headers: bool = True  # False: may hold back the response headers too


@dataclass(frozen=True)
class Stall:
    """Send nothing further; hold the connection until the client leaves or the server stops."""

    send_headers: bool = True  # False: stall before even the response headers


@dataclass(frozen=True)
class Gate:
    """Send nothing further until the test sets ``opened`` (or the client leaves): a
    stream held at a known point for as long as the test needs, with no timing."""

    opened: threading.Event


@dataclass(frozen=True)
class HttpError:
    """A plain JSON error response instead of a stream (only as the first step)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass(frozen=True)
class Drop:
    """Close the connection abruptly, without ending the chunked body."""


Step = Frame | Delay | Stall | Gate | HttpError | Drop
Script = list[Step]


@dataclass(frozen=True)
class Block:
    """A content block for :func:`message`: its ``content_block`` and its deltas."""

    content_block: dict[str, Any]
    deltas: tuple[dict[str, Any], ...] = ()
    output_tokens: int = 0  # this block's share of the default output token count


def frame(event: str, data: dict[str, Any]) -> Frame:
    """Any SSE frame, verbatim."""
    return Frame(event, data)


def ping() -> Frame:
    return Frame("ping", {"type": "ping"})


def delay(seconds: float, *, send_headers: bool = True) -> Delay:
    return Delay(seconds, send_headers)


def stall(*, send_headers: bool = True) -> Stall:
    return Stall(send_headers)


def gate(opened: threading.Event) -> Gate:
    return Gate(opened)


def drop() -> Drop:
    return Drop()


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def http_error(
    status: int,
    body_json: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> HttpError:
    """A JSON error response before any stream; default body in Anthropic's error shape and,
    for 429 and 529, a ``retry-after: 1`` header (pass ``headers={}`` for none)."""
    if body_json is None:
        error_type = _ERROR_TYPES.get(status, "api_error")
        body_json = error_body(error_type, f"fake {error_type} ({status})")
    if headers is None:
        headers = {"retry-after": "1"} if status in (429, 529) else {}
    return HttpError(status, body_json, dict(headers))


def sse_error(error_type: str = "overloaded_error", message: str = "Overloaded") -> Frame:
    """An ``event: error`` frame, as the API sends mid-stream."""
    return Frame("error", error_body(error_type, message))


def _as_chunks(chunks: Sequence[str] | str) -> list[str]:
    return [chunks] if isinstance(chunks, str) else list(chunks)


def text(chunks: Sequence[str] | str) -> Block:
    """A text block; one ``text_delta`` per chunk."""
    parts = _as_chunks(chunks)
    return Block(
        {"type": "text", "text": ""},
        tuple({"type": "text_delta", "text": c} for c in parts),
        len(parts),
    )


def cited_text(chunks: Sequence[str] | str, citations: Sequence[dict[str, Any]]) -> Block:
    """A text block whose text deltas are followed by one ``citations_delta`` per citation
    (``web_search_result_location``, ``char_location``, ... as the API sends them)."""
    block = text(chunks)
    cited = tuple({"type": "citations_delta", "citation": c} for c in citations)
    return Block(
        {**block.content_block, "citations": []}, block.deltas + cited, block.output_tokens
    )


def thinking(chunks: Sequence[str] | str, signature: str | None = "sig_fake") -> Block:
    """A thinking block: one ``thinking_delta`` per chunk, then a ``signature_delta``."""
    parts = _as_chunks(chunks)
    deltas: list[dict[str, Any]] = [{"type": "thinking_delta", "thinking": c} for c in parts]
    if signature is not None:
        deltas.append({"type": "signature_delta", "signature": signature})
    return Block({"type": "thinking", "thinking": "", "signature": ""}, tuple(deltas), len(parts))


def redacted_thinking(data: str = "EmwKAhgBEgy3redacted") -> Block:
    return Block({"type": "redacted_thinking", "data": data})


def tool_use(tool_id: str, name: str, json_fragments: Sequence[str] = ()) -> Block:
    """A tool_use block; one ``input_json_delta`` per fragment (the API's first is often "")."""
    return Block(
        {"type": "tool_use", "id": tool_id, "name": name, "input": {}},
        tuple({"type": "input_json_delta", "partial_json": f} for f in json_fragments),
        len(json_fragments),
    )


def server_tool_use(tool_id: str, name: str, json_fragments: Sequence[str] = ()) -> Block:
    block = tool_use(tool_id, name, json_fragments)
    return Block(
        {**block.content_block, "type": "server_tool_use"}, block.deltas, block.output_tokens
    )


text_block = text
thinking_block = thinking
tool_use_block = tool_use


def message(
    blocks: Sequence[Block],
    *,
    input_tokens: int = 12,
    output_tokens: int | None = None,
    stop_reason: str | None = "end_turn",
    model: str | None = None,
    message_id: str | None = None,
    chunk_delay: float = 0.0,
    delta_usage: dict[str, Any] | None = None,
    cache_read_input_tokens: int = 0,
    cache_creation_input_tokens: int = 0,
) -> Script:
    """A whole streamed message: message_start, each block (start, deltas, stop),
    message_delta (stop_reason and cumulative usage) and message_stop.

    ``model=None`` echoes the request's model and ``message_id=None`` makes one up, when the
    script plays. ``output_tokens=None`` counts one token per delta. ``chunk_delay`` sleeps
    before every delta. ``delta_usage`` adds fields to message_delta's usage (for instance
    ``{"input_tokens": 20}``). The input counts are the API's: ``input_tokens`` the
    uncached input only, beside the cache's reads and writes (a server with a prompt cache
    puts what it billed in their place).
    """
    if output_tokens is None:
        output_tokens = max(1, sum(b.output_tokens for b in blocks))
    inputs = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_creation_input_tokens,
        "cache_read_input_tokens": cache_read_input_tokens,
    }
    steps: Script = [
        Frame(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": model,
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {**inputs, "output_tokens": 1},
                },
            },
        )
    ]
    for index, block in enumerate(blocks):
        steps.append(
            Frame(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": block.content_block,
                },
            )
        )
        for d in block.deltas:
            if chunk_delay:
                steps.append(Delay(chunk_delay))
            steps.append(
                Frame(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": d},
                )
            )
        steps.append(Frame("content_block_stop", {"type": "content_block_stop", "index": index}))
    usage: dict[str, Any] = {**inputs, "output_tokens": output_tokens, **(delta_usage or {})}
    steps.append(
        Frame(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": usage,
            },
        )
    )
    steps.append(Frame("message_stop", {"type": "message_stop"}))
    return steps


def text_reply(
    chunks: Sequence[str] | str,
    *,
    input_tokens: int = 12,
    output_tokens: int | None = None,
    stop_reason: str | None = "end_turn",
    model: str | None = None,
    message_id: str | None = None,
    chunk_delay: float = 0.0,
    cache_read_input_tokens: int = 0,
    cache_creation_input_tokens: int = 0,
) -> Script:
    """A message with one text block."""
    return message(
        [text(chunks)],
        input_tokens=input_tokens,
        cache_read_input_tokens=cache_read_input_tokens,
        cache_creation_input_tokens=cache_creation_input_tokens,
        output_tokens=output_tokens,
        stop_reason=stop_reason,
        model=model,
        message_id=message_id,
        chunk_delay=chunk_delay,
    )


DEFAULT_CHUNKS = ("Hello", " from", " the fake", " model.")


def default_reply() -> Script:
    return text_reply(list(DEFAULT_CHUNKS))
