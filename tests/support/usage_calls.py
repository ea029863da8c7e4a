"""What the usage tests ask of a front-end and its webhook receiver: a credential's
header, an API key's name (the user its generations are counted under), and a
generation's ``generation.finished`` webhook as received."""

from __future__ import annotations

from typing import Any

from standardwebhooks import Webhook

from broadcaster.auth import credentials
from tests.support.webhooks import SECRET, Receiver


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


def key_name(key: str) -> str:
    """The user an API key's generations are counted under: ``key:<its name>``."""
    return "key:" + credentials.hash_key(key).removeprefix("sha256:")[:12]


async def finished(receiver: Receiver, gid: str) -> dict[str, Any] | None:
    """The ``data`` of generation ``gid``'s ``generation.finished``, once received
    (verified as a receiver would); None before (a probe for ``polling.poll``)."""
    for got in receiver.accepted():
        body = Webhook(SECRET).verify(got.body, got.headers)
        if body["type"] == "generation.finished" and body["data"]["id"] == gid:
            return dict(body["data"])
    return None
