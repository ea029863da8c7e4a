"""One attempt: a signed POST of a delivery's body, bounded in time, its answer judged.

A 2xx is success. Every other answer, and no answer, is retried on the schedule, 4xx
included: a receiver that answers 401 or 404 is most often being deployed or has the
wrong secret for a while, and a day of retries then a dead-letter list an operator can
replay loses less than giving up at once. The exception is 410 Gone, which says the
receiver is gone for good: the delivery goes to the dead-letter list at once. Redirects
are not followed (a generation's ``webhook_url`` was checked against the allow-list; the
address it redirects to was not).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx2

from broadcaster.webhooks.compose import Delivery
from broadcaster.webhooks.signing import Signer


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str
    """The metric's label (``metrics.FAILURE_REASONS``)."""
    detail: str
    """For the log and the dead-letter list."""
    final: bool = False
    """No retry: to the dead-letter list at once (410 Gone)."""


class Sender:
    """The HTTP client of one deliverer: at most ``concurrency`` connections, every
    attempt within ``timeout`` seconds whatever the receiver does."""

    def __init__(self, url: str | None, signer: Signer, timeout: float, concurrency: int) -> None:
        self.url = url
        self.signer = signer
        self.timeout = timeout
        self.client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(timeout),
            limits=httpx2.Limits(
                max_connections=concurrency, max_keepalive_connections=concurrency
            ),
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": "broadcaster-webhooks/0.1"},
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, delivery: Delivery) -> Failure | None:
        """POST the delivery once; None if the receiver accepted it."""
        url = delivery.to or self.url
        if not url:
            return Failure("no_url", "this deliverer has no BROADCASTER_WEBHOOK_URL")
        headers = self.signer.headers(delivery.webhook_id, delivery.body)
        try:
            async with asyncio.timeout(self.timeout):
                # The answer's body is never read: only its status counts.
                async with self.client.stream(
                    "POST", url, content=delivery.body, headers=headers
                ) as response:
                    status = response.status_code
        except (TimeoutError, httpx2.TimeoutException):
            return Failure("timeout", f"no answer within {self.timeout:g} s")
        except httpx2.ConnectError as exc:
            return Failure("connect", f"cannot connect: {exc}"[:300])
        except httpx2.HTTPError as exc:
            return Failure("network", f"{type(exc).__name__}: {exc}"[:300])
        if 200 <= status < 300:
            return None
        if status == 410:
            return Failure("http_410", "HTTP 410 Gone: the receiver is gone", final=True)
        kind = "http_5xx" if status >= 500 else "http_4xx" if status >= 400 else "http_3xx"
        return Failure(kind, f"HTTP {status}")
