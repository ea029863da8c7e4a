"""``/v1/usage``: what a user's generations used, by UTC day and by model (docs/cost.md).
Only an API key with the ``admin`` right reads it."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import JSONResponse

from broadcaster.core import names
from broadcaster.core.events import Usage
from broadcaster.generations.ledger import ModelUse, today
from broadcaster.http import openapi
from broadcaster.http.access import producer
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import LedgerDep, SettingsDep
from broadcaster.http.stream_ids import api_router

router = api_router()

MAX_DAYS = 366
"""Days one report covers at most (and never more than are kept)."""

USER_MAX = 300
"""The longest user a report names (``sub:`` and a token's ``sub``, at most 256 long)."""


@router.get(
    "/v1/usage",
    responses=openapi.ok(200, openapi.UsageReport, "the user's usage, by day and model")
    | openapi.errors(401, 403, 422, 429),
    dependencies=producer("admin"),
)
async def usage(
    ledger: LedgerDep,
    settings: SettingsDep,
    user: Annotated[str, Query(min_length=1, max_length=USER_MAX)],
    from_: Annotated[str | None, Query(alias="from", pattern=names.DAY_PATTERN)] = None,
    to: Annotated[str | None, Query(pattern=names.DAY_PATTERN)] = None,
) -> JSONResponse:
    """``user``'s usage from ``from`` to ``to`` (UTC days, ``YYYY-MM-DD``, both
    included; each defaults to the other, and both to today). A user is ``sub:<sub>``
    for a token's holder or ``key:<name>`` for an API key, as the ``generation.finished``
    webhook names it."""
    first, last = _days(from_, to, min(MAX_DAYS, settings.usage_retention_days + 1))
    names = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    found = await ledger.days(user, names)
    days = [_day(name, models) for name, models in zip(names, found, strict=True)]
    every = [m for models in found for m in models]
    total = sum((m.usage for m in every), Usage())
    return JSONResponse(
        {
            "user": user,
            "days": days,
            "total": total.snake(),
            "total_tokens": total.total,
            "generations": sum(m.generations for m in every),
        }
    )


def _day(name: str, models: list[ModelUse]) -> dict[str, Any]:
    return {
        "date": name,
        "total_tokens": sum(m.usage.total for m in models),
        "models": [m.body() for m in models],
    }


def _days(first: str | None, last: str | None, most: int) -> tuple[date, date]:
    """The days asked for; 422 for a malformed day, an end before the start, or more
    than ``most`` days."""
    now = today()
    start, end = _date(first or last or now, "from"), _date(last or first or now, "to")
    if end < start:
        raise ApiError(422, "invalid_request", "to is before from")
    if (end - start).days + 1 > most:
        raise ApiError(422, "invalid_request", f"at most {most} days a report")
    return start, end


def _date(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text) if len(text) == 10 else _refuse(name)
    except ValueError:
        return _refuse(name)


def _refuse(name: str) -> date:
    raise ApiError(422, "invalid_request", f"{name}: a UTC day, YYYY-MM-DD")
