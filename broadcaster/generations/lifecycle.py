"""A generation's life around its events: created queued, claimed by one worker at a time
(the owner every append of that worker names, so a worker that lost its job is refused),
released when a worker hands it back; cancelled (``cancel``: its stream ends with
``abort``). Its events and their expiry are the log's
(``core/eventlog.py``); these scripts touch only the stream's metadata, under the same hash tag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from broadcaster.core import keys
from broadcaster.core.eventlog import EventLog, StreamNotFound, script


@dataclass(frozen=True, slots=True)
class Claim:
    """What a worker learns when it takes a generation: where the stream is, which try."""

    last_seq: int
    attempt: int


class Generations:
    def __init__(self, log_: EventLog) -> None:
        self.log = log_
        redis = log_.redis
        self._create = redis.register_script(
            script("create_generation.lua", "broadcaster.generations")
        )
        self._claim = redis.register_script(script("claim.lua", "broadcaster.generations"))
        self._release = redis.register_script(script("release.lua", "broadcaster.generations"))

    async def create(self, stream_id: str, request: dict[str, Any]) -> bool:
        """Create a queued generation; False if the id is taken. Whether its end sends
        webhooks is decided here, once: to the deployment's receiver if this process's
        log says so (``EventLog.webhooks``), and to the request's own ``webhook_url``."""
        url = request.get("webhook_url") or ""
        hook = ("d" if self.log.webhooks else "") + ("u" if url else "")
        created = await self._create(
            keys=[keys.meta_key(stream_id), keys.names_key(stream_id)],
            args=[
                json.dumps(request, separators=(",", ":")),
                self.log.idle_ttl,
                hook,
                url,
                self.log.channel(stream_id),
                self.log.publish,
            ],
        )
        return bool(created)

    async def recreate(self, stream_id: str, request: dict[str, Any]) -> bool:
        """Create again a generation whose metadata Redis lost, dropping what is left of
        its events and text, for the one worker that wrote all of them to write them
        again (an event log without its hash could never be appended to: ids must grow).
        False if the generation exists."""
        if not await self.create(stream_id, request):
            return False
        await self.log.redis.delete(keys.log_key(stream_id), keys.text_key(stream_id))
        return True

    async def discard(self, stream_id: str) -> None:
        """Delete a generation that was created but never queued (nobody saw it)."""
        await self.log.redis.delete(*keys.stream_keys(stream_id))

    async def claim(self, stream_id: str, owner: str) -> Claim | None:
        """Make ``owner`` the only writer of a generation and count the attempt.

        Returns None when the generation is gone or already ended (nothing to run).
        """
        status, seq, attempt = await self._claim(keys=[keys.meta_key(stream_id)], args=[owner])
        if status != b"OK":
            return None
        return Claim(int(seq), int(attempt))

    async def release(self, stream_id: str, owner: str) -> bool:
        """Give up ownership of a generation that is not ended (it goes back to
        ``queued``); False if ``owner`` no longer owns it."""
        return bool(await self._release(keys=[keys.meta_key(stream_id)], args=[owner]))


class NoSuchGeneration(Exception):
    """No generation has this id (never, expired, or the stream is not a generation)."""


async def cancel(log_: EventLog, stream_id: str) -> None:
    """End generation ``stream_id`` with ``abort`` (reason ``cancelled``):
    ``NoSuchGeneration`` when there is no such generation, ``StreamEnded`` when it has
    already ended."""
    info = await log_.info(stream_id)
    if info is None or info.kind != "generation":
        raise NoSuchGeneration(stream_id)
    try:
        # The abort is appended here, at once; the worker sees the stream ended and
        # stops the model call (it polls, and its next append is refused anyway).
        await log_.append(
            stream_id,
            [{"type": "abort", "reason": "cancelled"}],
            kind="generation",
            meta={"error": ""},
        )
    except StreamNotFound:
        raise NoSuchGeneration(stream_id) from None
