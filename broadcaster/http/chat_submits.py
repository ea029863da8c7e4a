"""``POST /v1/chat``'s work between its route and ``chat/conversation.py``: the body read
(``submits.py``), the chat's owner checked, an ``Idempotency-Key`` claimed (a retry
answers the first request's stream again and starts nothing), the turn taken, and what
it refuses answered with the project's error body."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from broadcaster.chat import conversation
from broadcaster.chat.records import generation_id
from broadcaster.core.logconfig import current_stream
from broadcaster.generations.request import RequestInvalid
from broadcaster.http import idempotent
from broadcaster.http.chat_access import caller, check_owner
from broadcaster.http.chat_answers import answer, steered
from broadcaster.http.errors import ApiError, refused
from broadcaster.http.settings import Settings
from broadcaster.http.submits import read_submit
from broadcaster.viewers.ask import from_request
from broadcaster.viewers.opening import check_room


async def submitted(request: Request, stores: conversation.Stores, settings: Settings) -> Response:
    """A submit, whole: its turn taken and its answer's stream (or a steer's short
    answer); a retry of one with the same ``Idempotency-Key``, the first's again."""
    rules = settings.chat_rules()
    read = await read_submit(request, settings, rules.defaults)
    chat = read.chat
    who = await caller(request)
    check_owner(who, await stores.chats.get(chat.id, whole=False), chat.id)
    once = await idempotent.begin(request, "chat", read.raw)
    if once.replay is not None:
        return await replayed(request, once.replay)
    try:
        turn = await conversation.submit(
            stores,
            rules,
            chat,
            read.messages,
            new_id=partial(generation_id, chat.id),
            # A front-end at its connection limit says so before it starts anything.
            room=partial(check_room, request, from_request(request)),
            job=read.job,
            owner=who.owner,
            placed=read.placed,
        )
    except BaseException as exc:
        await once.release()
        if isinstance(exc, RequestInvalid):
            raise ApiError(422, "invalid_request", exc.message, details=exc.details) from None
        if isinstance(exc, conversation.Refusal):
            raise refused(exc) from None
        raise
    settled = {"chat": chat.id, "generation": turn.generation, "base": turn.base}
    await once.settle(settled | {"steered": turn.steered})
    if turn.steered is not None:
        return steered(chat.id, turn.generation, turn.steered, turn.base)
    return await answer(request, chat.id, turn.generation, turn.base)


async def replayed(request: Request, first: dict[str, Any]) -> Response:
    """A retried submit's answer: the first one's, again (its generation's stream from
    the same point), with nothing started."""
    chat_id, generation, base = first["chat"], first["generation"], int(first["base"])
    current_stream.set(generation)
    if first.get("steered") is not None:
        response = steered(chat_id, generation, first["steered"], base)
    else:
        response = await answer(request, chat_id, generation, base)
    response.headers[idempotent.REPLAYED_HEADER] = "true"
    return response
