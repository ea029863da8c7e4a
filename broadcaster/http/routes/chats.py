"""``/v1/chats``: the caller's chats (``GET /v1/chats``, newest first, in pages) and one
SSE connection that carries their lifecycle alone (``GET /v1/chats/events``: a turn
started, waiting for a person, finished, a chat deleted), for an app's list of a user's
chats (``chat/owners.py``).

Whose chats: a token's subject's; an API key's own, or, with ``?owner=<sub>``, those of a
token holder (a key acts on every chat); on an open deployment, those made without an
owner.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, cast

from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response

from broadcaster.chat.owners import Listed
from broadcaster.chat.records import ChatRecord
from broadcaster.core import keys, names
from broadcaster.core.eventlog import EventLog
from broadcaster.http import openapi, openapi_chats, openapi_requests
from broadcaster.http.access import credential_first
from broadcaster.http.chat_access import caller
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import ChatsDep, EventLogDep, OwnersDep
from broadcaster.http.stream_ids import api_router
from broadcaster.viewers.ask import from_request
from broadcaster.viewers.opening import stream_response

router = api_router()

LIST_MAX = 100
"""The most chats a page of ``GET /v1/chats`` holds."""
OWNER_MAX = 256
CURSOR_MAX = 100

_STATUS = {"queued": "running", "running": "running", "waiting": "waiting"}
"""A latest generation's status as the list says it (any other: ``finished``)."""


async def _owner(request: Request, named: str | None) -> str:
    """Whose chats the caller asks for; 403 for a token without a subject, or for a
    token that names another owner."""
    await credential_first(request, "read")
    who = await caller(request)
    if named is not None:
        if not who.every_chat:
            raise ApiError(403, "forbidden", "only an API key names another owner")
        return f"sub:{named}"
    if getattr(request.state, "token_grant", None) is not None and not who.owner:
        raise ApiError(403, "forbidden", "a token without a subject owns no chats")
    return who.owner


@router.get(
    "/v1/chats",
    responses=openapi.ok(200, openapi_chats.ChatList, "the caller's chats, newest first")
    | openapi.errors(400, 401, 403, 429),
)
async def list_chats(
    request: Request,
    *,
    chats: ChatsDep,
    event_log: EventLogDep,
    owners: OwnersDep,
    limit: Annotated[int, Query(ge=1, le=LIST_MAX)] = 20,
    before: Annotated[
        str | None, Query(pattern=names.CHATS_CURSOR_PATTERN, max_length=CURSOR_MAX)
    ] = None,
    owner: Annotated[str | None, Query(min_length=1, max_length=OWNER_MAX)] = None,
) -> JSONResponse:
    """The caller's chats, newest first: ``id``, ``title`` (from its first user text),
    ``status`` (``running``, ``waiting`` or ``finished``), ``updated_at``; ``older`` is
    the ``before`` of the next page (null at the end)."""
    who = await _owner(request, owner)
    listed = await owners.page(who, limit, _cursor(before))
    records = await chats.many([c.chat_id for c in listed])
    statuses = await _statuses(event_log, records)
    rows = []
    for item, record, status in zip(listed, records, statuses, strict=True):
        if record is None:  # expired or deleted: out of the list
            await owners.remove(who, item.chat_id)
            continue
        rows.append(
            {
                "id": item.chat_id,
                "title": record.title,
                "status": status,
                "updated_at": _iso(item.updated_ms),
                "created_at": _iso(record.created_at) if record.created_at else None,
                "turns": record.turn,
            }
        )
    older = f"{listed[-1].updated_ms}.{listed[-1].chat_id}" if len(listed) == limit else None
    return JSONResponse({"chats": rows, "older": older})


def _cursor(before: str | None) -> Listed | None:
    if before is None:
        return None
    ms, _, chat_id = before.partition(".")
    if not ms.isdigit() or not chat_id:
        raise ApiError(400, "bad_cursor", "before is not a cursor this route gave")
    return Listed(chat_id, int(ms))


async def _statuses(event_log: EventLog, records: list[ChatRecord | None]) -> list[str]:
    """Each chat's latest generation's status, as the list says it (one round trip)."""
    async with event_log.redis.pipeline(transaction=False) as pipe:
        for record in records:
            pipe.hget(keys.meta_key(record.generation if record else ""), "status")
        found = await pipe.execute()
    said = [cast(bytes, raw).decode() if raw else "" for raw in found]
    return [_STATUS.get(status, "finished") for status in said]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


@router.get(
    "/v1/chats/events",
    response_class=Response,
    responses={
        **openapi.sse("the lifecycle of the caller's chats (chat-turn-started, …)"),
        **openapi.errors(400, 401, 403, 409, 429, 503),
    },
    openapi_extra=openapi_requests.LAST_EVENT_ID,
)
async def chats_events(
    request: Request,
    owners: OwnersDep,
    owner: Annotated[str | None, Query(min_length=1, max_length=OWNER_MAX)] = None,
) -> Response:
    """One SSE connection for all the caller's chats, their lifecycle alone:
    ``chat-turn-started``, ``chat-waiting``, ``chat-turn-finished``, ``chat-deleted``
    (each with its ``chatId``), resumable with ``Last-Event-ID``."""
    who = await _owner(request, owner)
    feed = await owners.opened(who)
    ask = from_request(request, [feed])
    plain = ask._replace(compact=False, presence=False, caught_up=False)
    return await stream_response(request, plain)
