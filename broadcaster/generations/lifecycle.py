"""A generation's life around its events: created queued, claimed by one worker at a time
(the owner every append of that worker names, so a worker that lost its job is refused),
held by that worker while it runs (``hold``: a claim within the lease of the last hold
is refused, ``Held``: a duplicate job never steals a live generation, unless its worker
was found dead: ``generations/liveness.py``), released when a
worker hands it back; cancelled (``cancel``: its stream ends with ``abort``). Its events
and their expiry are the log's (``core/eventlog.py``); these scripts touch only the
stream's metadata, under the same hash tag. A claim, a release and a recreation are
acknowledged as an append is, through the log's ``Durability`` (``core/durability.py``):
with ``BROADCASTER_DURABILITY`` ``replicas`` or ``fsync``, not before the replicas (or
disks) have them, else ``NotConfirmed``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from broadcaster.core import events, keys
from broadcaster.core.eventlog import EventLog, StreamNotFound, script


@dataclass(frozen=True, slots=True)
class Claim:
    """What a worker learns when it takes a generation: where the stream is, which run
    (``attempt``: every run but a repair and a person's decision counts), and how many
    workers were lost under it (``lost``: takeovers after a lapsed hold, the budget of
    ``WORKER_MAX_ATTEMPTS``; a hand-back is no lost worker); ``decided``: the run follows
    a person's decision, not a lost or departed worker."""

    last_seq: int
    attempt: int
    lost: int = 0
    decided: bool = False


class Held(Exception):
    """A live worker holds the generation (its hold is within the lease): this claim is
    a duplicate job's, and must not take it."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"generation {stream_id} is held by a live worker")
        self.stream_id = stream_id


NAMED = ("user", "chat_id", "provider", "model")
"""The request's fields a generation's metadata holds beside it, each on its own: who it
is for and what it asked, which its end's webhook and its usage's settling read without
parsing the request."""


def named(request: dict[str, Any]) -> list[str]:
    """``NAMED``'s fields of ``request`` that it has, as field and value pairs."""
    return [part for n in NAMED if isinstance(v := request.get(n), str) and v for part in (n, v)]


_REQUEST_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def request_json(request: dict[str, Any]) -> bytes:
    """A generation's request as its metadata keeps it (``json.dumps`` with ``,`` and
    ``:``), encoded a piece at a time (``events.dumps_in_pieces``): one from a large body
    is encoded in a thread, which would hold the interpreter's lock all along in one call."""
    return events.dumps_in_pieces(request, _REQUEST_ENCODE)


async def request_json_here(request: dict[str, Any]) -> bytes:
    """``request_json`` where the caller runs: the default, for a process with no pool (a
    front-end encodes one that came in a large body off its event loop:
    ``http/offloop.py``)."""
    return request_json(request)


RequestJson = Callable[[dict[str, Any]], Awaitable[bytes]]
"""How a generation's request becomes its metadata's (``request_json``)."""


DEFAULT_LEASE_S = 15.0
"""A hold older than this is lapsed (``WORKER_LEASE_SECONDS``'s default): its worker was lost."""


class Generations:
    def __init__(
        self,
        log_: EventLog,
        lease_s: float = DEFAULT_LEASE_S,
        dead: Callable[[], Sequence[str]] | None = None,
        *,
        encode: RequestJson = request_json_here,
    ) -> None:
        self.log = log_
        self.encode = encode
        """What encodes a request for its metadata (``create``)."""
        self.lease_ms = int(lease_s * 1000)
        """How long a worker's hold lasts without a refresh (``hold``)."""
        self.dead = dead
        """The workers this process found dead lately (``liveness.DeadWorkers``): a claim
        takes a generation one of them holds at once, its hold notwithstanding."""
        redis = log_.redis
        self._create = redis.register_script(
            script("create_generation.lua", "broadcaster.generations")
        )
        self._claim = redis.register_script(script("claim.lua", "broadcaster.generations"))
        self._release = redis.register_script(script("release.lua", "broadcaster.generations"))
        self._hold = redis.register_script(script("hold.lua", "broadcaster.generations"))

    async def create(self, stream_id: str, request: dict[str, Any]) -> bool:
        """Create a queued generation; False if the id is taken. Whether its end sends
        webhooks is decided here, once: to the deployment's receiver if this process's
        log says so (``EventLog.webhooks``), and to the request's own ``webhook_url``."""
        url = request.get("webhook_url") or ""
        hook = ("d" if self.log.webhooks else "") + ("u" if url else "")
        encoded = await self.encode(request)
        created = await self._create(
            keys=[keys.meta_key(stream_id), keys.names_key(stream_id)],
            args=[
                encoded,
                self.log.idle_ttl,
                hook,
                url,
                self.log.channel(stream_id),
                self.log.publish,
                # This create's own token: sent again after its reply was lost, it finds
                # the generation it made (create_generation.lua), not one of that id.
                secrets.token_hex(8),
                *named(request),
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
        log_key = keys.log_key(stream_id)
        await self.log.durability.command(log_key, "DEL", log_key, keys.text_key(stream_id))
        return True

    async def discard(self, stream_id: str) -> None:
        """Delete a generation that was created but never queued (nobody saw it)."""
        await self.log.redis.delete(*keys.stream_keys(stream_id))

    async def claim(
        self, stream_id: str, owner: str, *, repair: bool = False, token: str = ""
    ) -> Claim | None:
        """Make ``owner`` the only writer of a generation and count the run (a lapsed hold
        counts a lost worker, ``Claim.lost``; ``repair``: the owner takes its own stream again
        after a loss). None when it is gone or ended; ``Held`` when a live worker holds it.
        ``token``: this claim's own, random: sent again with the same token after its
        reply was lost, it finds the claim it made and answers as that one did (counting
        nothing again), instead of ``Held`` by its own hold (``worker.attempt.claim_surely``)."""
        mode = "repair" if repair else ""
        dead = list(self.dead()) if self.dead is not None else []
        # Through the committer (BROADCASTER_DURABILITY), as an append: ``NotConfirmed``
        # if a failover could still lose it, which the worker treats as a lost connection.
        meta = keys.meta_key(stream_id)
        args = [owner, self.lease_ms, mode, token, *dead]
        reply = await self.log.durability.script(self._claim, [meta], args)
        status, seq, attempt, lost = reply[:4]
        if status == b"HELD":
            raise Held(stream_id)
        if status != b"OK":
            return None
        return Claim(int(seq), int(attempt), int(lost), decided=reply[4:] == [1])

    async def stored_request(self, stream_id: str) -> str | None:
        """The generation's stored request (JSON), or None."""
        return _text(await self.log.redis.hget(keys.meta_key(stream_id), "request"))

    async def status(self, stream_id: str) -> str | None:
        """The generation's status (``queued``, ``running``, ``waiting``, ...), or None."""
        return _text(await self.log.redis.hget(keys.meta_key(stream_id), "status"))

    async def steering(self, stream_id: str) -> list[bytes]:
        """The messages waiting to steer the generation's next step (JSON each, oldest
        first): the append that records them drops exactly as many (``ltrim``)."""
        raw = await self.log.redis.lrange(keys.steer_key(stream_id), 0, -1)
        return [item.encode() if isinstance(item, str) else item for item in raw]

    async def hold(self, stream_ids: list[str], owner: str) -> None:
        """Refresh ``owner``'s hold on the generations it runs (every third of a lease):
        one script per generation, sent together (each lives in its own slot)."""
        await asyncio.gather(
            *(self._hold(keys=[keys.meta_key(s)], args=[owner]) for s in stream_ids)
        )

    async def hold_one(self, stream_id: str, owner: str) -> bool:
        """``hold`` of one generation; False if ``owner`` no longer owns it."""
        return bool(await self._hold(keys=[keys.meta_key(stream_id)], args=[owner]))

    async def release(self, stream_id: str, owner: str) -> bool:
        """Hand back a generation that is not ended (it goes back to ``queued``, and its
        ``handbacks`` count grows; no attempt is counted); False if ``owner`` no longer
        owns it."""
        meta = keys.meta_key(stream_id)
        return bool(await self.log.durability.script(self._release, [meta], [owner]))


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value or None


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
