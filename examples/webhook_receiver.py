"""A webhook receiver: FastAPI, verifying broadcaster's webhooks with ``standardwebhooks``.

Run it, and point a deployment at it:

    WEBHOOK_SECRET=whsec_... uvicorn examples.webhook_receiver:app --port 9000
    BROADCASTER_WEBHOOK_URL=http://127.0.0.1:9000/webhooks \\
    BROADCASTER_WEBHOOK_SECRET=whsec_... python -m broadcaster serve

What every receiver should do, and this one does:

* verify the signature on the raw body, before parsing anything (401 if it fails:
  ``standardwebhooks`` also refuses a timestamp more than 5 minutes off, so a recorded
  request cannot be replayed later);
* deduplicate by ``webhook-id``: delivery is at least once, so the same event may come
  twice (after a timeout, or a deliverer that died mid-attempt). Here a set in memory;
  in production a unique key in your database, or Redis ``SET NX`` with a TTL of a few
  days, written in the same transaction as the event's effect;
* answer 2xx quickly, doing slow work elsewhere: an answer slower than the deployment's
  ``BROADCASTER_WEBHOOK_TIMEOUT_SECONDS`` (10 s) counts as a failure and is retried;
* not rely on order: events of different streams, and retries, may arrive in any order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook, WebhookVerificationError

Handler = Callable[[dict[str, Any]], None]


def print_event(event: dict[str, Any]) -> None:
    data = event["data"]
    if event["type"] == "generation.finished":
        print(f"generation {data['id']}: {data['status']} ({data['finish_reason']}), "
              f"usage {data['usage']}")  # fmt: skip
    elif event["type"] == "stream.ended":
        print(f"stream {data['id']} ended with {data['type']} at event {data['last_event_id']}")
    else:
        print(f"{event['type']}: {data}")


async def verified(webhook: Webhook, request: Request) -> dict[str, Any] | None:
    """The event a request carries, its signature checked on the raw body first; None
    when it does not verify."""
    body = await request.body()
    try:
        event: dict[str, Any] = webhook.verify(body, dict(request.headers))
    except WebhookVerificationError:
        return None
    return event


def create_app(secret: str, handle: Handler = print_event) -> FastAPI:
    """The receiver's app: ``POST /webhooks``, each event handed to ``handle`` once."""
    webhook = Webhook(secret)
    seen: set[str] = set()  # webhook-ids handled (see the module's docstring)
    app = FastAPI()

    @app.post("/webhooks", status_code=204)
    async def receive(request: Request) -> Response:
        event = await verified(webhook, request)
        if event is None:
            return Response(status_code=401)
        webhook_id = request.headers["webhook-id"]
        if webhook_id not in seen:  # a retry of an event already handled: just say yes
            handle(event)
            seen.add(webhook_id)
        return Response(status_code=204)

    return app


app = create_app(os.environ["WEBHOOK_SECRET"]) if "WEBHOOK_SECRET" in os.environ else None
"""For ``uvicorn examples.webhook_receiver:app`` (with ``WEBHOOK_SECRET`` set)."""
