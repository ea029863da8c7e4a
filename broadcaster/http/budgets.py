"""A user's daily token budget, checked before a generation starts: a chat submit, an
AG-UI run, ``POST /v1/generations`` (docs/cost.md).

The budget is ``BROADCASTER_DAILY_TOKEN_BUDGET``, lowered for a token's holder by its
``daily_tokens`` claim; what a user used today is the ledger's
(``generations/ledger.py``). A user at or over it is refused, 429 ``budget_exhausted``
with ``Retry-After`` to midnight UTC. What counts is what ended: an answer that is
running when its user crosses the budget finishes, and the next start is refused.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from broadcaster.generations.ledger import seconds_to_next_day
from broadcaster.http.access import Caller, caller
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import get_ledger, get_settings


def budget_of(who: Caller, setting: int) -> int | None:
    """The caller's daily budget: the setting (0: none), lowered by its token's claim."""
    claimed = who.daily_tokens
    if claimed is None:
        return setting or None
    return min(setting, claimed) if setting else claimed


async def within_budget(request: Request) -> str | None:
    """The request's user (what the generations it starts record), after 429
    ``budget_exhausted`` for one at or over its budget; None for nobody."""
    who = await caller(request)
    budget = budget_of(who, (await get_settings(request)).daily_token_budget)
    if who.user is None or budget is None:
        return who.user
    used = await (await get_ledger(request)).spent(who.user)
    if used >= budget:
        raise ApiError(
            429,
            "budget_exhausted",
            f"this user has used {used} of its {budget} tokens today (UTC)",
            used=used,
            budget=budget,
            headers={"retry-after": str(seconds_to_next_day())},
        )
    return who.user


def with_user(job: dict[str, Any], user: str | None) -> dict[str, Any]:
    """``job`` naming the user it is for (``generations.lifecycle.NAMED``)."""
    return job if user is None else {**job, "user": user}
