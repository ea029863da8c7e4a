"""The model provider seam: a provider streams its call in the neutral vocabulary
(``worker.providers.parts``), so the mapping to the contract's events is shared and pure."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, runtime_checkable

import httpx2

from worker.providers.parts import ModelEvent


class ProviderError(Exception):
    """A failed model call. ``retryable`` errors are retried if no output was shown yet."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        kind: str = "other",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.kind = kind
        """For metrics: rate_limited, overloaded, server_error, client_error,
        authentication, mid_stream, timeout, connection, incomplete or other."""


AUTH_STATUSES = (401, 403)
"""What a model API answers to a missing, wrong or unauthorised key: never retried, and
never taken for a lost worker."""


def auth_error(status: int, detail: str, variable: str) -> ProviderError:
    """The model API refused the worker's credentials: the generation fails at once with
    an error saying so and which variable holds them."""
    what = "refused the API key" if status == 401 else "does not allow this API key"
    return ProviderError(
        f"model provider {what} ({status}): {detail}; check {variable}",
        retryable=False,
        kind="authentication",
    )


class Provider(Protocol):
    def stream(
        self, request: dict[str, Any]
    ) -> AbstractAsyncContextManager[AsyncIterator[ModelEvent]]:
        """Open one model call. Leaving the context closes it (no more tokens billed)."""
        ...

    async def aclose(self) -> None: ...


RESUME_FIELD = "provider_resume"
"""The stream's metadata field that holds a provider's resume point (JSON)."""

HANDED_BACK = "handed back"
"""The message of the cancel that stops a generation to hand it back to the queue at
shutdown (``worker.dispatch``): another worker goes on with it, so a model call that can
outlive its worker is left running for that one."""

CACHE_KEY = "_cache_key"
"""A request holding this key names the prompt cache its calls share (the chat's id, else
the generation's; the attempt sets it): OpenAI's ``prompt_cache_key``."""


def cache_key(request: dict[str, Any]) -> str | None:
    """The prompt cache's key a request names (``CACHE_KEY``), if any."""
    key = request.get(CACHE_KEY)
    return key if isinstance(key, str) and key else None


REATTACH = "reattach"
"""A request holding this key continues the model call its value names (``Reattach``)."""


@runtime_checkable
class Reattaching(Protocol):
    """A provider whose model calls outlive the worker that made them (OpenAI's background
    responses): a worker that takes a generation over streams the rest of the call."""

    async def reattachable(self, point: dict[str, Any]) -> bool:
        """The call at ``point`` (a ``RESUME_FIELD`` value, parsed) can still be streamed."""
        ...


Providers = Mapping[str, Provider]
"""The provider that runs each request provider's jobs (``anthropic``, ``openai``)."""


def retry_after(headers: httpx2.Headers) -> float | None:
    """The wait a 429 or 5xx asks for, in seconds (both SDKs answer on httpx2)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None
