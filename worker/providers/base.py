"""The model provider seam: a provider streams Anthropic's raw stream events as dicts
(the wire JSON objects), so the mapping to the contract's events is shared and pure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol


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
        """For metrics: rate_limited, overloaded, server_error, client_error, mid_stream,
        timeout, connection, incomplete or other."""


class Provider(Protocol):
    def stream(
        self, request: dict[str, Any]
    ) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]:
        """Open one model call. Leaving the context closes it (no more tokens billed)."""
        ...

    async def aclose(self) -> None: ...
