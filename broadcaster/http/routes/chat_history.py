"""A chat's history as a resource: ``GET /v1/chat/{id}/messages`` (the chat so far, whole
or in pages, with its version as an ``ETag``), ``PUT`` of the same (a chat seeded from an
app's own store: a chat that expired from Redis brought back, or one made elsewhere),
and ``DELETE /v1/chat/{id}`` (its running answer stopped, the chat and its answers
removed). Only the chat's owner, or an API key, uses them (``http/chat_access.py``).
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broadcaster.chat.convert import NOTHING_TO_SEND, ChatBody, UIMessage, generation_body
from broadcaster.chat.messages import PAGE_MAX, BadCursor, transcript
from broadcaster.chat.records import SeedRefused, title_of
from broadcaster.core import keys
from broadcaster.core.eventlog import EventLog, StreamEnded
from broadcaster.generations.lifecycle import NoSuchGeneration, cancel
from broadcaster.generations.request import RequestInvalid
from broadcaster.http import openapi, openapi_chats, openapi_requests
from broadcaster.http.bodies import offloop, read_json
from broadcaster.http.chat_access import opened
from broadcaster.http.errors import ApiError
from broadcaster.http.resources import ChatsDep, EventLogDep, OwnersDep, SettingsDep
from broadcaster.http.stream_ids import api_router

router = api_router()

MESSAGE_ID_MAX = 256
"""The longest ``before`` a history page takes (a message id: the AI SDK's are shorter)."""
DEFAULT_PAGE = 50
"""A history page's size when it names ``before`` and no ``limit``."""
SUBJECT_MAX = 256
"""The longest owner a seeding key may name (a token's ``sub``)."""


@router.get(
    "/v1/chat/{chat_id}/messages",
    responses=openapi.ok(200, openapi.ChatMessages, "the chat's UI messages so far")
    | openapi.errors(400, 401, 403, 404),
)
async def messages(
    chat_id: str,
    request: Request,
    *,
    chats: ChatsDep,
    event_log: EventLogDep,
    limit: Annotated[int | None, Query(ge=1, le=PAGE_MAX)] = None,
    before: Annotated[str | None, Query(min_length=1, max_length=MESSAGE_ID_MAX)] = None,
) -> Response:
    """The chat's UI messages so far, the latest answer folded from its events until its
    turn is settled. With ``limit`` (1 to 500) or ``before`` (a message id): a page, the
    newest ``limit`` messages before ``before`` (oldest first), and ``older``, the
    ``before`` of the page before it (null at the chat's start). ``ETag``: the chat's
    version, for ``PUT``'s ``If-Match``."""
    page = _page_query(limit, before)
    record, _ = await opened(request, chats, chat_id, "read")
    try:
        found = await transcript(chats, event_log, chat_id, record, page)
    except BadCursor:
        raise ApiError(
            400, "bad_cursor", f"before={before!r} names no earlier message of chat {chat_id!r}"
        ) from None
    if found is None:
        raise ApiError(404, "not_found", f"no chat {chat_id!r} (unknown or expired)")
    # A whole chat is encoded off the event loop: it may be a large answer.
    etag = {"etag": f'"{found["version"]}"'}
    return await offloop(request).json_response(found, len(found["messages"]), etag)


def _page_query(limit: int | None, before: str | None) -> tuple[int, str | None] | None:
    """A history page's ``limit`` and ``before`` (their bounds are the query's, checked
    by FastAPI: 422 beyond); None for the whole chat."""
    if limit is None and before is None:
        return None
    return limit or DEFAULT_PAGE, before


class SeedBody(BaseModel):
    """``PUT /v1/chat/{id}/messages``: the chat's UI messages, oldest first; a key may
    name the owner of a chat it makes (a token's ``sub``)."""

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)
    messages: list[UIMessage] = Field(min_length=1)
    """The chat's UI messages, oldest first, as ``GET /messages`` gives them."""
    owner: str | None = Field(None, min_length=1, max_length=SUBJECT_MAX)
    """An API key's only: the ``sub`` of the token holder who owns the chat it makes."""


@router.put(
    "/v1/chat/{chat_id}/messages",
    openapi_extra=openapi_requests.body(SeedBody),
    responses=openapi.ok(200, openapi_chats.ChatSeeded, "the chat it was, seeded")
    | openapi.ok(201, openapi_chats.ChatSeeded, "a chat made")
    | openapi.errors(401, 403, 404, 409, 412, 413, 422, 429),
)
async def seed(
    chat_id: str,
    request: Request,
    *,
    chats: ChatsDep,
    event_log: EventLogDep,
    settings: SettingsDep,
    owners: OwnersDep,
) -> JSONResponse:
    """Seed the chat's history with UI messages (checked as a submit's are): a chat that
    does not exist is made (201); one that exists is seeded only when ``If-Match`` names
    its version (``ETag`` of ``GET /messages``), and never while its answer runs."""
    record, who = await opened(request, chats, chat_id, "submit")
    raw = await read_json(request, settings.chat_max_body_bytes)
    body = _seed_body(raw, settings.chat_max_messages)
    if body.owner is not None and not who.every_chat:
        raise ApiError(403, "forbidden", "only an API key names the owner of a chat it seeds")
    running = record is not None and record.generation and not record.answered
    info = await event_log.info(record.generation) if record is not None and running else None
    if info is not None and not info.ended:
        raise ApiError(409, "chat_busy", f"chat {chat_id!r} has an answer under way")
    owner = f"sub:{body.owner}" if body.owner is not None else who.owner
    owner = record.owner if record is not None else owner
    given = [m.model_dump() for m in body.messages]
    try:
        version = await chats.seed(
            chat_id, given, owner=owner, title=title_of(given), version=_if_match(request)
        )
    except SeedRefused as exc:
        if exc.found == "exists":
            raise ApiError(
                409, "chat_exists", f"chat {chat_id!r} exists: name its version in If-Match"
            ) from None
        raise ApiError(412, "version_mismatch", f"chat {chat_id!r} is at another version") from None
    await owners.touch(owner, chat_id)
    status = 201 if record is None else 200
    found = {"id": chat_id, "version": version, "messages": len(given)}
    return JSONResponse(found, status_code=status, headers={"etag": f'"{version}"'})


def _seed_body(raw: Any, most: int) -> SeedBody:
    """The body checked, and its messages as a submit's must convert; 422 otherwise."""
    given = raw.get("messages") if isinstance(raw, dict) else None
    if isinstance(given, list) and len(given) > most:
        raise ApiError(422, "too_many_messages", f"messages: at most {most} a request")
    try:
        body = SeedBody.model_validate(raw)
        ids = [m.id for m in body.messages]
        if len(set(ids)) != len(ids):
            raise RequestInvalid("two messages share an id", [{"loc": ["messages"], "msg": "ids"}])
        _converts(ChatBody(id="seed", messages=body.messages))
    except ValidationError as exc:
        details = [
            {"loc": list(e["loc"]), "msg": e["msg"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise ApiError(422, "invalid_request", "invalid messages", details=details) from None
    except RequestInvalid as exc:
        raise ApiError(422, "invalid_request", exc.message, details=exc.details) from None
    return body


def _converts(chat: ChatBody) -> None:
    """``RequestInvalid`` for a part a submit would refuse; a chat with nothing yet to
    send to the model (its messages' parts empty) is a chat still."""
    try:
        generation_body(chat)
    except RequestInvalid as exc:
        if exc.details != [{"loc": ["messages"], "msg": NOTHING_TO_SEND}]:
            raise


def _if_match(request: Request) -> str | None:
    """The version ``If-Match`` names (an entity tag, quoted or not), if any."""
    value = request.headers.get("if-match")
    if value is None:
        return None
    return value.strip().removeprefix("W/").strip('"') or None


@router.delete(
    "/v1/chat/{chat_id}",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "deleted"}, **openapi.errors(401, 403, 404, 429)},
)
async def delete(
    chat_id: str, request: Request, chats: ChatsDep, event_log: EventLogDep, owners: OwnersDep
) -> Response:
    """Delete the chat: its running answer is stopped (``abort``), then its record, its
    waiting messages and its answers' streams are removed. ``GET /messages`` is 404
    after."""
    record, _ = await opened(request, chats, chat_id, "submit")
    if record is None:
        raise ApiError(404, "not_found", f"no chat {chat_id!r} (unknown or expired)")
    if record.generation:
        with contextlib.suppress(StreamEnded, NoSuchGeneration):
            await cancel(event_log, record.generation)
    answers = {*await chats.generations(chat_id), *_queued(await chats.queued(chat_id))}
    await chats.forget(chat_id)
    await _drop_streams(event_log, [g for g in answers if g])
    await owners.remove(record.owner, chat_id)
    await owners.notice(record.owner, "deleted", chatId=chat_id)
    return Response(status_code=204)


def _queued(entries: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("generation") or "") for e in entries]


async def _drop_streams(event_log: EventLog, generations: list[str]) -> None:
    """The streams of a deleted chat's answers, removed (one round trip)."""
    async with event_log.redis.pipeline(transaction=False) as pipe:
        for generation in generations:
            for key in keys.stream_keys(generation):
                pipe.delete(key)
        await pipe.execute()
