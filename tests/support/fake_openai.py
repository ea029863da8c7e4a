"""A local stand-in for OpenAI's Chat Completions API, speaking its streaming wire format.

Point the real ``openai`` SDK at it (``base_url=srv.base_url`` or ``OPENAI_BASE_URL``; the
URL ends in ``/v1``) from this process or any other. It is the fake Anthropic server's
HTTP machinery (a real TCP server on 127.0.0.1, scripts, records, clients that leave)
with OpenAI's framing: ``data: <chunk>`` lines with no ``event:``, ending with
``data: [DONE]``, and OpenAI's error bodies.

Scripts come in the shapes the servers send::

    srv.enqueue(reply(text=["Hel", "lo"]))                         # OpenAI
    srv.enqueue(reply(reasoning=["hm"], text=["ok"]))              # vLLM: reasoning_content
    srv.enqueue(reply(reasoning=["hm"], reasoning_field="reasoning", text=["ok"]))
    srv.enqueue(reply(tools=[streamed_call("call_1", "f", ['{"a"', ": 1}"])]))
    srv.enqueue(reply(tools=[whole_call("call_1", "f", {"a": 1})]))  # Ollama: one chunk
    srv.enqueue(reply(text=["a"])[:3] + [stream_error("boom")])    # mid-stream error
    srv.enqueue([http_error(429)])

The usage chunk says what the API says: ``prompt_tokens`` (all input) with
``prompt_tokens_details.cached_tokens``, ``completion_tokens`` with
``completion_tokens_details.reasoning_tokens``. With a prompt cache
(``FakeOpenAIServer(cache=OpenAICache())``, ``tests/support/prompt_cache.py``) the input
counts are what the cache billed for the request's messages under its
``prompt_cache_key``, and ``exchange.bill`` keeps it.

Like the real API it refuses (400) a request whose ``tool`` message answers no tool call
of the assistant message before it, or that leaves a tool call unanswered; a request
without ``stream: true``; and a ``temperature`` outside 0..2.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    Frame,
    HttpError,
    Script,
    delay,
    drop,
    stall,
)
from tests.support.prompt_cache import Bill, OpenAICache

__all__ = [
    "FakeOpenAIServer",
    "chunk",
    "delay",
    "done",
    "drop",
    "http_error",
    "reply",
    "stall",
    "stream_error",
    "streamed_call",
    "url_citation",
    "whole_call",
]

DONE = Frame("", {"[DONE]": True})
"""The ``data: [DONE]`` line that ends a stream."""


def done() -> Frame:
    return DONE


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    choices: bool = True,
) -> Frame:
    """One ``chat.completion.chunk``; ``id`` and ``model`` are filled in as it plays."""
    data: dict[str, Any] = {
        "id": None,
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": None,
        "choices": (
            [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason, "logprobs": None}]
            if choices
            else []
        ),
        "usage": usage,
    }
    return Frame("", data)


@dataclass(frozen=True)
class Call:
    """A tool call as its deltas."""

    deltas: tuple[dict[str, Any], ...]


def streamed_call(call_id: str, name: str, fragments: Sequence[str], index: int = 0) -> Call:
    """OpenAI's and vLLM's way: id and name first, then the arguments in fragments."""
    first = {"index": index, "id": call_id, "type": "function"}
    first["function"] = {"name": name, "arguments": ""}
    rest = [{"index": index, "function": {"arguments": f}} for f in fragments]
    return Call((first, *rest))


def whole_call(call_id: str, name: str, arguments: dict[str, Any], index: int = 0) -> Call:
    """Ollama's way: the whole call in one delta."""
    function = {"name": name, "arguments": json.dumps(arguments)}
    return Call(({"index": index, "id": call_id, "type": "function", "function": function},))


def url_citation(url: str, title: str, start: int = 0, end: int = 0) -> dict[str, Any]:
    """A Chat Completions ``url_citation`` annotation (as search models send them)."""
    cited = {"url": url, "title": title, "start_index": start, "end_index": end}
    return {"type": "url_citation", "url_citation": cited}


def reply(
    *,
    text: Sequence[str] = (),
    reasoning: Sequence[str] = (),
    reasoning_field: str = "reasoning_content",
    tools: Sequence[Call] = (),
    finish_reason: str | None = None,
    prompt_tokens: int = 12,
    completion_tokens: int | None = None,
    usage: bool = True,
    cached_tokens: int = 0,
    reasoning_tokens: int | None = None,
    annotations: Sequence[dict[str, Any]] = (),
) -> Script:
    """A whole stream: the role chunk, reasoning, text and tool deltas (one chunk each),
    one chunk with the ``annotations`` (``url_citation`` items) if any, the
    finish chunk (``tool_calls`` when there are tools, else ``stop``), the usage chunk
    and ``[DONE]``. Output tokens default to one per delta, reasoning tokens to one per
    reasoning delta."""
    steps: Script = [chunk({"role": "assistant", "content": ""})]
    steps += [chunk({reasoning_field: r}) for r in reasoning]
    steps += [chunk({"content": t}) for t in text]
    if annotations:
        steps.append(chunk({"annotations": list(annotations)}))
    steps += [chunk({"tool_calls": [d]}) for call in tools for d in call.deltas]
    finish = finish_reason or ("tool_calls" if tools else "stop")
    steps.append(chunk({}, finish_reason=finish))
    if usage:
        out = completion_tokens
        if out is None:
            out = len(text) + len(reasoning) + sum(len(c.deltas) for c in tools)
        thought = len(reasoning) if reasoning_tokens is None else reasoning_tokens
        counts = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": out,
            "total_tokens": prompt_tokens + out,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": thought},
        }
        steps.append(chunk(usage=counts, choices=False))
    steps.append(DONE)
    return steps


def stream_error(message: str = "The server had an error", kind: str = "server_error") -> Frame:
    """An error object in place of a chunk, as servers send when a stream fails."""
    return Frame("", {"error": {"message": message, "type": kind, "param": None, "code": None}})


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_api_key",
    404: "not_found_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    503: "server_error",
}


def error_body(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def http_error(
    status: int, body_json: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> HttpError:
    """A JSON error response before any stream; for 429, ``retry-after: 1``."""
    kind = _ERROR_TYPES.get(status, "server_error")
    body = body_json or error_body(f"fake {kind} ({status})", kind)
    if headers is None:
        headers = {"retry-after": "1"} if status == 429 else {}
    return HttpError(status, body, dict(headers))


class FakeOpenAIServer(FakeAnthropicServer):
    """``with FakeOpenAIServer() as srv:``; ``srv.base_url`` ends in ``/v1``."""

    def __init__(
        self, *, api_key: str | None = None, port: int = 0, cache: OpenAICache | None = None
    ) -> None:
        super().__init__(
            api_key=api_key, default_script=reply(text=["Hello", " there."]), port=port
        )
        self.cache = cache

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _bill(self, body: Any) -> Bill | None:
        if self.cache is None or not isinstance(body, dict):
            return None
        return self.cache.bill(body.get("messages") or [], body.get("prompt_cache_key"))

    def _refusal(
        self, method: str, path: str, headers: dict[str, str], body: Any
    ) -> HttpError | None:
        def simple(status: int, kind: str, msg: str) -> HttpError:
            return HttpError(status, error_body(msg, kind), {})

        if path.rstrip("/") != "/v1/chat/completions":
            return simple(404, "not_found_error", f"no route {path}")
        if method != "POST":
            return simple(405, "invalid_request_error", "use POST")
        auth = headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not key or (self.api_key is not None and key != self.api_key):
            return simple(401, "invalid_api_key", "Incorrect API key provided")
        if not isinstance(body, dict) or body.get("stream") is not True:
            return simple(400, "invalid_request_error", "the fake only answers stream: true")
        problem = _tool_problem(body.get("messages"))
        temperature = body.get("temperature")
        if temperature is not None and not 0 <= temperature <= 2:
            problem = "temperature: must be between 0 and 2"
        return None if problem is None else simple(400, "invalid_request_error", problem)

    def _issue(self, step: Frame, thinking: dict[Any, str]) -> None:
        return None  # nothing is signed here

    @staticmethod
    def _frame_bytes(step: Frame) -> bytes:
        if step is DONE or "[DONE]" in step.data:
            return b"data: [DONE]\n\n"
        return f"data: {json.dumps(step.data, separators=(',', ':'))}\n\n".encode()

    @staticmethod
    def _fill_in(step: Frame, model: Any, request_id: str, bill: Bill | None) -> Frame:
        if "choices" not in step.data:
            return step
        data = dict(step.data)
        if bill is not None and isinstance(data.get("usage"), dict):
            data["usage"] = openai_usage(data["usage"], bill)
        if data.get("model") is None:
            data["model"] = model if isinstance(model, str) else "gpt-fake"
        if data.get("id") is None:
            data["id"] = "chatcmpl-" + request_id.removeprefix("req_fake_")
        return Frame(step.event, data)


def _tool_problem(messages: Any) -> str | None:
    """What OpenAI says of tool messages that do not follow their assistant message."""
    if not isinstance(messages, list) or not messages:
        return "messages: must be a non-empty array"
    asked: list[str] = []
    for m, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role == "tool":
            if msg.get("tool_call_id") not in asked:
                return (
                    f"messages.[{m}].role: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'."
                )
            asked.remove(msg["tool_call_id"])
            continue
        if asked:
            return (
                "An assistant message with 'tool_calls' must be followed by tool messages "
                f"responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {asked[0]}"
            )
        if role == "assistant":
            asked = [c.get("id") for c in msg.get("tool_calls") or []]
    return None


def openai_usage(usage: dict[str, Any], bill: Bill) -> dict[str, Any]:
    """A Chat Completions usage object with the input counts ``bill`` says."""
    out = int(usage.get("completion_tokens") or 0)
    return {
        **usage,
        "prompt_tokens": bill.total,
        "total_tokens": bill.total + out,
        "prompt_tokens_details": {"cached_tokens": bill.cache_read},
    }
