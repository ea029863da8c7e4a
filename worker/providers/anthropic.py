"""The Anthropic provider: the official async SDK's ``messages.stream``.

The SDK's own retries are off (``max_retries=0``): the worker retries pre-output errors
itself, so that it can honour ``retry-after``, observe cancels while waiting, and tell
"before output" from "after output" (only the former may be retried invisibly).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import httpx2

from worker.providers.anthropic_cache import with_breakpoints
from worker.providers.anthropic_stream import AnthropicReader
from worker.providers.base import AUTH_STATUSES, ProviderError, auth_error, retry_after
from worker.providers.parts import ModelEvent

# The raw events of Anthropic's wire format; the SDK also yields derived convenience
# events (text, input_json, ...) which the mapping does not need.
_RAW = {
    "message_start",
    "message_delta",
    "message_stop",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
}


def classify(exc: BaseException) -> ProviderError:
    """Turn what the SDK raises into a ProviderError with a message a person can act on."""
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        err = body.get("error") if isinstance(body.get("error"), dict) else body
        etype = err.get("type", "") if isinstance(err, dict) else ""
        emsg = err.get("message", "") if isinstance(err, dict) else ""
        detail = f"{etype}: {emsg}" if etype else (emsg or exc.message)
        if exc.status_code == 200:  # an `event: error` in the middle of the stream
            return ProviderError(
                f"model provider error mid-stream: {detail}", retryable=True, kind="mid_stream"
            )
        if exc.status_code in AUTH_STATUSES:
            return auth_error(exc.status_code, detail, "ANTHROPIC_API_KEY")
        retryable = exc.status_code in (408, 409, 429) or exc.status_code >= 500
        what = {429: "rate limited", 529: "overloaded"}.get(exc.status_code, "error")
        kind = {429: "rate_limited", 529: "overloaded"}.get(
            exc.status_code, "server_error" if exc.status_code >= 500 else "client_error"
        )
        return ProviderError(
            f"model provider {what} ({exc.status_code}): {detail}",
            retryable=retryable,
            retry_after=retry_after(exc.response.headers),
            kind=kind,
        )
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return ProviderError(
            "model provider timed out (no data within the read timeout)",
            retryable=True,
            kind="timeout",
        )
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return ProviderError(
            f"cannot reach the model provider: {exc}", retryable=True, kind="connection"
        )
    if isinstance(exc, TypeError) and "authentication" in str(exc):
        # The SDK found no key (nor token) to send: nothing else can make this call work.
        return ProviderError(
            "the model provider has no credentials: set ANTHROPIC_API_KEY",
            retryable=False,
            kind="authentication",
        )
    return ProviderError(f"model call failed: {type(exc).__name__}: {exc}", retryable=False)


def missing_credentials() -> str | None:
    """Why the SDK could not authenticate a call, or None: it sends ``ANTHROPIC_API_KEY``
    (``x-api-key``) or ``ANTHROPIC_AUTH_TOKEN`` (a bearer token)."""
    if os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN"):
        return None
    return "the anthropic provider needs ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN), unset here"


_PASSED = ("system", "tools", "tool_choice", "thinking", "stop_sequences", "service_tier")
"""Messages parameters passed through as the client sent them."""

_BODY_ONLY = ("temperature", "top_p", "top_k")
"""Messages parameters the SDK (2.x) has no arguments for: sent in the body as they are."""


def sdk_params(request: dict[str, Any]) -> dict[str, Any]:
    """The ``messages.stream`` arguments for a stored generation request."""
    messages = request.get("messages") or [{"role": "user", "content": request["prompt"]}]
    params: dict[str, Any] = {
        "model": request["model"],
        "max_tokens": request["max_tokens"],
        "messages": _verifiable(messages),
    }
    params |= {name: request[name] for name in _PASSED if request.get(name) is not None}
    extra = {name: request[name] for name in _BODY_ONLY if request.get(name) is not None}
    if extra:
        params["extra_body"] = extra
    # The request's ``metadata`` is the client's own; only Anthropic's user_id goes on.
    user_id = (request.get("metadata") or {}).get("user_id")
    if isinstance(user_id, str):
        params["metadata"] = {"user_id": user_id}
    return params


def _verifiable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages without unsigned thinking blocks (from a provider that does not sign
    its reasoning): Anthropic refuses thinking it cannot verify, so it is dropped, as the
    AI SDK drops reasoning without a signature."""
    out = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            out.append(message)
            continue
        kept = [b for b in content if not (b.get("type") == "thinking" and not b.get("signature"))]
        if kept:
            out.append({**message, "content": kept})
    return out


class AnthropicProvider:
    def __init__(
        self,
        read_timeout: float,
        client: anthropic.AsyncAnthropic | None = None,
        *,
        caching: bool = True,
    ) -> None:
        # ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL are read by the SDK, as it always does.
        self.client = client or anthropic.AsyncAnthropic(
            max_retries=0, timeout=httpx2.Timeout(read_timeout, connect=10.0)
        )
        self.caching = caching
        """Breakpoints for the prompt cache on each request (``anthropic_cache``)."""

    @asynccontextmanager
    async def stream(self, request: dict[str, Any]) -> AsyncIterator[AsyncIterator[ModelEvent]]:
        params = sdk_params(request)
        if self.caching:
            params = with_breakpoints(params)
        try:
            async with self.client.messages.stream(**params) as stream:
                yield _events(stream)
        except ProviderError:
            raise
        except (anthropic.APIError, httpx2.HTTPError) as exc:
            raise classify(exc) from exc
        except TypeError as exc:
            # What the SDK raises when it has no key to send; any other is a bug, raised.
            if "authentication" not in str(exc):
                raise
            raise classify(exc) from exc

    async def aclose(self) -> None:
        await self.client.close()


_FLAT_DELTAS = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "input_json_delta": "partial_json",
    "signature_delta": "signature",
}
"""The deltas of one string field: their wire JSON is built by hand (one a token, where
``model_dump`` would cost more than reading and mapping them)."""


def _wire(event: Any) -> dict[str, Any]:
    """A raw event's wire JSON, as ``model_dump`` gives it."""
    if event.type == "content_block_delta":
        delta = event.delta
        field = _FLAT_DELTAS.get(delta.type)
        if field is not None:
            wire = {"type": delta.type, field: getattr(delta, field)}
            return {"type": "content_block_delta", "index": event.index, "delta": wire}
    dumped: dict[str, Any] = event.model_dump(mode="json", exclude_none=False)
    return dumped


async def _events(stream: Any) -> AsyncIterator[ModelEvent]:
    """The raw events (as their wire JSON) read into the neutral vocabulary; what the SDK
    raises mid-stream (an ``event: error``, a read timeout, a dropped connection) becomes
    a ProviderError here, where it is understood."""
    reader = AnthropicReader()
    try:
        async for event in stream:
            if event.type in _RAW:
                for read in reader.feed(_wire(event)):
                    yield read
    except (anthropic.APIError, httpx2.HTTPError) as exc:
        raise classify(exc) from exc
