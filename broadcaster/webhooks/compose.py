"""A webhook's body, composed from the raw fields of an outbox entry (pure).

The append script stores what it knows when a stream ends (the terminal event, the
metadata's usage, error and times, who the generation is for and what it ran) and nothing
about the wire format: the body is made
here, once, when the entry is moved into the deliveries, so every attempt and a replay
send the very same bytes under the same ``webhook-id``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from broadcaster.core.events import STATUS_BY_TERMINAL, Usage

GENERATION_FINISHED = "generation.finished"
STREAM_ENDED = "stream.ended"

DEPLOYMENT = ""
"""The ``to`` of a delivery to the deployment's receiver (``BROADCASTER_WEBHOOK_URL`` of
the deliverer that attempts it); any other ``to`` is a generation's own URL."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event to one receiver: an entry of the deliveries stream."""

    webhook_id: str
    type: str
    stream_id: str
    to: str
    body: bytes

    def fields(self) -> dict[str, str | bytes]:
        return {
            "id": self.webhook_id,
            "type": self.type,
            "stream": self.stream_id,
            "to": self.to,
            "body": self.body,
        }

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Delivery:
        return cls(
            fields[b"id"].decode(),
            fields[b"type"].decode(),
            fields[b"stream"].decode(),
            fields[b"to"].decode(),
            fields[b"body"],
        )


def iso(ms: str | int) -> str | None:
    """Milliseconds since the epoch as ISO 8601 (UTC), as the HTTP API writes times."""
    if ms in ("", None):
        return None
    return datetime.fromtimestamp(int(ms) / 1000, UTC).isoformat(timespec="milliseconds")


def webhook_id(outbox_key: str, entry_id: str) -> str:
    """The ``webhook-id`` of an outbox entry: its group and entry id, unique in the
    deployment and the same for every attempt, receiver and replay of the event."""
    group = outbox_key.partition("{")[2].partition("}")[0]
    return f"msg_{group}_{entry_id}"


def deliveries(outbox_key: str, entry_id: str, raw: dict[str, str]) -> list[Delivery]:
    """The deliveries of one outbox entry: one per receiver its stream asked for."""
    event_type, data, at = _event(raw)
    body = json.dumps(
        {"type": event_type, "timestamp": iso(at), "data": data},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    msg = webhook_id(outbox_key, entry_id)
    hook = raw.get("hook", "")
    receivers = [DEPLOYMENT] if "d" in hook else []
    if "u" in hook and raw.get("url"):
        receivers.append(raw["url"])
    return [Delivery(msg, event_type, raw["stream"], to, body) for to in receivers]


def _event(raw: dict[str, str]) -> tuple[str, dict[str, Any], str]:
    """The event's type, its ``data`` and its time (ms) from an outbox entry."""
    if raw.get("k") == "event":  # Outbox.add
        return raw["type"], json.loads(raw["data"]), raw["at"]
    if raw.get("kind") == "generation":
        return GENERATION_FINISHED, generation_finished(raw), raw["at"]
    return STREAM_ENDED, stream_ended(raw), raw["at"]


def generation_finished(raw: dict[str, str]) -> dict[str, Any]:
    """``generation.finished``: how it ended, what it cost, when, for whom (its chat, and
    its user: a token's ``sub`` or an API key's name), and what ran it."""
    terminal = raw["type"]
    event = json.loads(raw["event"])
    if terminal == "finish":
        reason = event.get("finishReason")
    elif terminal == "abort":
        reason = event.get("reason")
    else:
        reason = "error"
    error = raw.get("error") or (event.get("errorText") if terminal == "error" else None)
    metadata = event.get("messageMetadata") if terminal == "finish" else None
    metadata = metadata if isinstance(metadata, dict) else {}
    model = metadata.get("model")
    return {
        "id": raw["stream"],
        "status": STATUS_BY_TERMINAL[terminal],
        "finish_reason": reason,
        "usage": _usage(raw.get("usage", ""), metadata.get("usage")),
        "error": error or None,
        "created_at": iso(raw.get("created_at", "")),
        "finished_at": iso(raw["at"]),
        "last_event_id": int(raw["seq"]),
        "chat_id": raw.get("chat_id") or None,
        "user": raw.get("user") or None,
        "provider": raw.get("provider") or None,
        "model": model if isinstance(model, str) and model else raw.get("model") or None,
    }


def _usage(stored: str, finish: Any) -> dict[str, int] | None:
    """The usage the generation's metadata holds, else the one its ``finish`` reports."""
    if stored:
        return Usage.from_snake(json.loads(stored)).snake()
    if isinstance(finish, dict):
        return Usage.from_ai_sdk(finish).snake()
    return None


def stream_ended(raw: dict[str, str]) -> dict[str, Any]:
    """``stream.ended``: a job feed's terminal event."""
    return {
        "id": raw["stream"],
        "type": raw["type"],
        "last_event_id": int(raw["seq"]),
        "ended_at": iso(raw["at"]),
    }
