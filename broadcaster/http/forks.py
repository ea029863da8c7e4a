"""A Durable Streams fork as ``PUT /v1/stream/{path}`` makes it: the budget its copy is
charged to (``durable.budget``), and why a fork is refused, as the route answers it."""

from __future__ import annotations

from fastapi import Request

from broadcaster.durable import fork
from broadcaster.durable.budget import ForkBudget, OverBudget, TooLarge, fork_room
from broadcaster.http.access import presented_key
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import get_settings
from broadcaster.viewers.ask import client_address


async def fork_budget(request: Request) -> ForkBudget:
    """The budget the fork's copy is charged to (``BROADCASTER_FORK_BYTES_PER_MINUTE``,
    per API key or token subject); ``OverBudget`` at once if it is spent this minute."""
    settings = await get_settings(request)
    key = await presented_key(request)
    payer = _payer(request, key.name if key is not None else None)
    redis = request.app.state.redis
    await fork_room(redis, payer, settings.fork_bytes_per_minute)
    return ForkBudget(redis, payer, settings.fork_bytes_per_minute)


def _payer(request: Request, key_name: str | None) -> str:
    """Whom a fork's bytes are counted against: the API key (``key_name``), or the token
    (its subject), as the rate limit counts them; without keys configured, the client's
    address."""
    name = key_name or getattr(request.state, "rate_name", None)
    if name:
        return str(name)
    return "a:" + (client_address(request) or "-")


def not_forked(exc: fork.Refused) -> ApiError:
    """A fork refused, as its answer: past the budget 429 (or 413 for a fork larger than
    a minute's), no source 404, a conflict 409, a bad fork point 400."""
    match exc:
        case OverBudget():
            return ApiError(
                429, "rate_limited", str(exc), headers={"retry-after": str(exc.retry_after)}
            )
        case TooLarge():
            return ApiError(413, "fork_too_large", str(exc))
        case fork.NoSource():
            return ApiError(404, "not_found", str(exc))
        case fork.Busy():
            return ApiError(409, "conflict", str(exc), headers={"retry-after": "1"})
        case fork.Conflict():
            return ApiError(409, "conflict", str(exc))
        case _:
            return ApiError(400, "bad_request", str(exc))
