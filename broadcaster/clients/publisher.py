"""The producer API for Python programs: publish events to a stream.

    async with Publisher.from_url("redis://localhost:6379/0") as pub:
        await pub.publish("job-42", {"type": "data-progress", "pct": 10})
        await pub.publish("job-42", [{"type": "data-progress", "pct": 100}, {"type": "finish"}])

It is the same atomic append that ``POST /v1/streams/{id}/events`` and the worker use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis

from broadcaster.core import connection, keys, names
from broadcaster.core.eventlog import AppendRefused, EventLog, StreamInfo


class Publisher:
    def __init__(
        self, redis: Redis, *, ended_ttl: int = keys.ENDED_TTL, idle_ttl: int = keys.IDLE_TTL
    ) -> None:
        """Publish through a client you own (``decode_responses`` must be off)."""
        self._log = EventLog(redis, ended_ttl=ended_ttl, idle_ttl=idle_ttl)
        self._owned: Redis | None = None

    @classmethod
    def from_url(cls, url: str, **ttls: int) -> Publisher:
        """A publisher with its own connection pool, closed by ``aclose()``."""
        redis = connection.command_client(url)
        pub = cls(redis, **ttls)
        pub._owned = redis
        return pub

    async def publish(
        self,
        stream_id: str,
        events: dict[str, Any] | Sequence[dict[str, Any]],
        *,
        expect_last_event_id: int | None = None,
    ) -> int:
        """Append one event, or a list atomically and in order; return the last seq.

        Raises ``InvalidEvent`` for a malformed event, ``StreamEnded`` after a terminal
        event, ``WrongKind`` for a generation, and ``StaleWriter`` when
        ``expect_last_event_id`` is given and the stream is elsewhere.
        """
        _check_stream_id(stream_id)
        batch = [events] if isinstance(events, dict) else list(events)
        return await self._log.append(
            stream_id, batch, kind="feed", expect_seq=expect_last_event_id
        )

    async def publish_many(
        self, batches: Mapping[str, dict[str, Any] | Sequence[dict[str, Any]]]
    ) -> dict[str, int]:
        """Append to many streams at once, in one round trip to Redis (one pipeline); each
        stream's events are appended atomically and in order, as ``publish`` does. Returns
        each stream's last seq; raises the first refusal (the other appends happened)."""
        items = []
        for stream_id, events in batches.items():
            _check_stream_id(stream_id)
            items.append((stream_id, [events] if isinstance(events, dict) else list(events)))
        seqs = {}
        for (sid, _), result in zip(items, await self._log.append_many(items), strict=True):
            if isinstance(result, AppendRefused):
                raise result
            seqs[sid] = result
        return seqs

    async def info(self, stream_id: str) -> StreamInfo | None:
        return await self._log.info(stream_id)

    async def aclose(self) -> None:
        if self._owned is not None:
            owned, self._owned = self._owned, None
            await owned.aclose()

    async def __aenter__(self) -> Publisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _check_stream_id(stream_id: str) -> None:
    if not names.is_stream_id(stream_id):
        raise ValueError(f"invalid stream id {stream_id!r}: use {names.STREAM_ID_PATTERN}")
