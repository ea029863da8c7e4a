"""The OpenAI provider: Chat Completions through the official async SDK, streamed
(``stream_options.include_usage`` for the token counts), so any OpenAI-compatible server
(vLLM, Ollama, llama.cpp, LiteLLM) serves by its URL: ``OPENAI_BASE_URL`` and
``OPENAI_API_KEY`` are read by the SDK.

The request is translated by ``openai_request`` and the chunks, into the neutral
vocabulary, by ``openai_stream``; errors are classified as the Anthropic provider's are, with
the SDK's own retries off (``max_retries=0``) for the same reasons: the worker honours
``retry-after``, watches cancels while it waits, and retries only before any output.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx2
import openai
from openai import AsyncStream
from openai.types.chat import ChatCompletionChunk

from worker.providers.base import (
    AUTH_STATUSES,
    ProviderError,
    auth_error,
    cache_key,
    retry_after,
)
from worker.providers.openai_request import Untranslatable, chat_params
from worker.providers.openai_stream import ChunkTranslator, IncompleteStream
from worker.providers.parts import ModelEvent


def _detail(exc: openai.APIError) -> str:
    """``type: message`` of the error body (the SDK gives its inner ``error`` object;
    servers that nest it once more are unwrapped too)."""
    body: dict[str, Any] = exc.body if isinstance(exc.body, dict) else {}
    err = body["error"] if isinstance(body.get("error"), dict) else body
    etype = str(err.get("type") or err.get("code") or "")
    emsg = str(err.get("message") or exc.message)
    return f"{etype}: {emsg}" if etype else emsg


def classify(exc: BaseException) -> ProviderError:
    """Turn what the SDK raises into a ProviderError with a message a person can act on."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status in AUTH_STATUSES:
            return auth_error(status, _detail(exc), "OPENAI_API_KEY")
        retryable = status in (408, 409, 429) or status >= 500
        kind = "rate_limited" if status == 429 else "server_error" if status >= 500 else None
        what = {429: "rate limited", 503: "overloaded"}.get(status, "error")
        return ProviderError(
            f"model provider {what} ({status}): {_detail(exc)}",
            retryable=retryable,
            retry_after=retry_after(exc.response.headers),
            kind=kind or "client_error",
        )
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return ProviderError(
            "model provider timed out (no data within the read timeout)",
            retryable=True,
            kind="timeout",
        )
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return ProviderError(
            f"cannot reach the model provider: {exc}", retryable=True, kind="connection"
        )
    if isinstance(exc, openai.APIError):  # an error object in the middle of the stream
        return ProviderError(
            f"model provider error mid-stream: {_detail(exc)}", retryable=True, kind="mid_stream"
        )
    return ProviderError(f"model call failed: {type(exc).__name__}: {exc}", retryable=False)


def make_client(timeout: httpx2.Timeout) -> openai.AsyncOpenAI:
    """The SDK's client; it reads ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` itself. A
    local server (Ollama, vLLM) needs no key, but the SDK refuses to start without one:
    then any key does."""
    try:
        return openai.AsyncOpenAI(max_retries=0, timeout=timeout)
    except openai.OpenAIError:
        return openai.AsyncOpenAI(api_key="unused", max_retries=0, timeout=timeout)


class OpenAIProvider:
    def __init__(
        self,
        read_timeout: float,
        max_tokens_param: str = "max_completion_tokens",
        client: openai.AsyncOpenAI | None = None,
        *,
        continue_final_message: bool = False,
        caching: bool = True,
    ) -> None:
        self.max_tokens_param = max_tokens_param
        self.continue_final_message = continue_final_message
        self.caching = caching
        """Each request names its prompt cache (``prompt_cache_key``: ``cache_key``)."""
        self.client = client or make_client(httpx2.Timeout(read_timeout, connect=10.0))

    @asynccontextmanager
    async def stream(self, request: dict[str, Any]) -> AsyncIterator[AsyncIterator[ModelEvent]]:
        try:
            params = chat_params(request, self.max_tokens_param, self.continue_final_message)
        except Untranslatable as exc:
            raise ProviderError(
                f"the openai provider cannot send this request: {exc}",
                retryable=False,
                kind="client_error",
            ) from exc
        key = cache_key(request)
        if self.caching and key is not None:
            params["prompt_cache_key"] = key
        try:
            # stream=True is in params: the call returns a stream of chunks.
            stream = cast(
                AsyncStream[ChatCompletionChunk],
                await self.client.chat.completions.create(**params),
            )
        except openai.APIError as exc:
            raise classify(exc) from exc
        try:
            yield _events(stream)
        finally:
            await stream.close()

    async def aclose(self) -> None:
        await self.client.close()


async def _events(stream: AsyncStream[ChatCompletionChunk]) -> AsyncIterator[ModelEvent]:
    """The chunks as neutral events; what the SDK raises mid-stream becomes a
    ProviderError here, where it is understood."""
    translator = ChunkTranslator()
    try:
        async for chunk in stream:
            for event in translator.feed(chunk.model_dump(mode="json")):
                yield event
        for event in translator.end():
            yield event
    except IncompleteStream as exc:
        raise ProviderError(str(exc), retryable=True, kind="incomplete") from exc
    except (openai.APIError, httpx2.HTTPError) as exc:
        raise classify(exc) from exc
