"""What each user's generations used, day by day (UTC, by the day it ended; kept
``retention_days``): settled once each generation ended, read for ``GET /v1/usage`` and
for a budget.

The append that ends a generation puts it in its group's unsettled set; ``settle``
takes it out, and only the call whose ``ZREM`` removed it adds the usage
(``scripts/spend.lua``), so a generation counts once however many front-ends hear of
it; the day keeps the generation it counted last, so a spend redis-py sends again after
its reply was lost counts nothing twice. A process dying between the two loses that
count: at most once, never twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from broadcaster.core import keys
from broadcaster.core.eventlog import script
from broadcaster.core.events import USAGE_KINDS, Usage, loads_strict

MAX_MODELS_A_DAY = 100
"""Models a user's day counts apart; the usage of any more is counted as ``(other)``."""

GENERATIONS = "generations"
"""The count of generations, beside the kinds of tokens, per provider and model."""

_META_FIELDS = ("user", "usage", "provider", "model", "steps_model", "updated_at")
"""What settling reads of a generation's metadata: ``steps_model`` is the model that
answered, as the Python worker records it; ``model`` the one asked for, or the one an
HTTP worker's ``finish`` named."""


def day_of(epoch_s: float) -> str:
    """The UTC day (``YYYY-MM-DD``) of a moment."""
    return datetime.fromtimestamp(epoch_s, UTC).date().isoformat()


def today() -> str:
    """The UTC day now."""
    return day_of(time.time())


def seconds_to_next_day(now: float | None = None) -> int:
    """Seconds until the next UTC midnight (at least 1): when a day's budget is whole."""
    now = time.time() if now is None else now
    return max(1, 86400 - int(now) % 86400)


@dataclass(frozen=True, slots=True)
class Settled:
    """A generation's usage, settled: whose (None when nobody was named), what it ran."""

    stream_id: str
    user: str | None
    provider: str
    model: str
    usage: Usage
    day: str


@dataclass(frozen=True, slots=True)
class ModelUse:
    """One provider and model's share of a day."""

    provider: str
    model: str
    generations: int
    usage: Usage

    def body(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            GENERATIONS: self.generations,
            **self.usage.snake(),
            "total_tokens": self.usage.total,
        }


class Ledger:
    """The users' days in ``redis``, each kept ``retention_days`` after it ends."""

    def __init__(self, redis: Redis, retention_days: int) -> None:
        self.redis = redis
        self.retention_days = retention_days
        self._spend = redis.register_script(script("spend.lua", "broadcaster.generations"))

    async def settle(self, stream_id: str) -> Settled | None:
        """Add ended generation ``stream_id``'s usage to its user's day, if no one has:
        what was settled, or None (settled already, not ended, or expired)."""
        if not await self.redis.zrem(keys.unsettled_key(stream_id), stream_id):
            return None
        raw = await self.redis.hmget(keys.meta_key(stream_id), list(_META_FIELDS))
        user, usage, provider, asked, answered, at = (_text(v) for v in raw)
        model = answered or asked
        if not at:
            return None  # expired meanwhile: nothing is left to count
        settled = Settled(
            stream_id,
            user or None,
            provider or "anthropic",  # requests stored before providers were named
            model.replace("\t", " "),
            Usage.from_snake(loads_strict(usage) if usage else None),
            day_of(int(at) / 1000),
        )
        if settled.user is not None:
            await self.add(settled.user, settled)
        return settled

    async def add(self, user: str, settled: Settled) -> None:
        """Count ``settled`` in ``user``'s day."""
        ends = datetime.combine(date.fromisoformat(settled.day), datetime.min.time(), UTC)
        expire_at = int((ends + timedelta(days=1 + self.retention_days)).timestamp())
        counts = [*zip(USAGE_KINDS, settled.usage.counts(), strict=True), (GENERATIONS, 1)]
        await self._spend(
            keys=[keys.usage_key(user, settled.day)],
            args=[
                expire_at,
                settled.usage.total,
                settled.provider,
                settled.model,
                MAX_MODELS_A_DAY,
                settled.stream_id,  # counted once, a spend sent again notwithstanding
                *(part for pair in counts for part in pair),
            ],
        )

    async def spent(self, user: str, day: str | None = None) -> int:
        """The tokens ``user`` used on ``day`` (default: today), as a budget counts them."""
        total = await self.redis.hget(keys.usage_key(user, day or today()), "total")
        return int(total or 0)

    async def days(self, user: str, days: list[str]) -> list[list[ModelUse]]:
        """Each of ``days``' use by ``user``, per provider and model (one pipeline: a
        user's days share one slot)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(keys.usage_key(user, day))
            found = await pipe.execute()
        return [_models(fields) for fields in found]


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return value or ""


def _models(fields: dict[bytes, bytes]) -> list[ModelUse]:
    """A day's hash as one ``ModelUse`` per provider and model, sorted."""
    by_model: dict[tuple[str, str], dict[str, int]] = {}
    for name, value in fields.items():
        provider, _, rest = name.decode().partition("\t")
        model, _, kind = rest.rpartition("\t")
        if kind:
            by_model.setdefault((provider, model), {})[kind] = int(value)
    return [
        ModelUse(provider, model, counts.get(GENERATIONS, 0), Usage.from_snake(counts))
        for (provider, model), counts in sorted(by_model.items())
    ]
