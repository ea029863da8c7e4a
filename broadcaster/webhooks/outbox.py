"""The webhook outbox: where other rooms add an event for the stream's receivers
(``Outbox(redis).add(stream_id, kind, data)``, one round trip).

A stream's end is queued by the append script itself, atomically with its terminal
event; other events (a viewer count crossing zero, an approval asked for) come here. They
go to the receivers the stream asked for when created (none: nothing queued). Delivery
is the deliverer's: signed, retried, at least once, in no guaranteed order; nothing here
waits for a receiver.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from broadcaster.core import keys, names
from broadcaster.core.durability import Durability
from broadcaster.core.eventlog import script

EVENT_TYPE_RE = names.WEBHOOK_EVENT_TYPE_RE
"""A webhook event type: dotted lower-case words (``stream.occupied``); checked by
``names.is_webhook_event_type``."""


class Outbox:
    def __init__(self, redis: Redis, durability: Durability | None = None) -> None:
        self.redis = redis
        self.durability = durability or Durability(redis)
        """When an entry is acknowledged (``core/durability.py``)."""
        self._add = redis.register_script(script("outbox_add.lua", "broadcaster.webhooks"))

    async def add(self, stream_id: str, type: str, data: dict[str, Any]) -> bool:
        """Queue webhook event ``type`` with ``data`` (a JSON object: the body's
        ``data``) about ``stream_id``. True if queued; False if the stream asked for no
        webhooks (or does not exist). One round trip; the deliverer adds the time, the
        ``webhook-id`` and the signature."""
        if not names.is_stream_id(stream_id):
            raise ValueError(f"not a stream id: {stream_id!r}")
        if not names.is_webhook_event_type(type):
            raise ValueError(f"a webhook event type is dotted lower-case words, not {type!r}")
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        queued = await self.durability.script(
            self._add,
            [keys.meta_key(stream_id), keys.outbox_key(stream_id)],
            [stream_id, type, body, keys.OUTBOX_MAX_LEN],
        )
        return bool(queued)
