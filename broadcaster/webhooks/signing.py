"""Standard Webhooks signatures, made with the ``standardwebhooks`` library itself, so
that what a receiver verifies with it is, by construction, what was signed."""

from __future__ import annotations

from datetime import UTC, datetime

from standardwebhooks import Webhook


class Signer:
    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret)

    def headers(self, webhook_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
        """The headers of one attempt: ``webhook-id`` (the same for every attempt),
        ``webhook-timestamp`` (this attempt's, in whole seconds: receivers refuse stale
        ones, so a retry is signed again) and ``webhook-signature`` (``v1,<base64>``)."""
        seconds = int((now or datetime.now(UTC)).timestamp())
        signature = self._webhook.sign(
            webhook_id, datetime.fromtimestamp(seconds, UTC), body.decode()
        )
        return {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(seconds),
            "webhook-signature": signature,
        }
