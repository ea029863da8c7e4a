"""A chat so far, as ``GET /v1/chat/{id}/messages`` answers it: whole, or a page of its
newest messages before one of them; and the chat so far as a submit or the pump builds
on it.

Its history list holds every message up to its latest answer, and that answer too once
its turn is settled (``chat/settle.py``); until then the answer is folded from its
generation's events (``ui_message.py``), so a running answer shows as far as it got. A
page reads the list's range and folds at most the latest answer: never the whole chat.
"""

from __future__ import annotations

from typing import Any, cast

from broadcaster.chat.records import ChatRecord, Chats
from broadcaster.chat.ui_message import ChatMessages
from broadcaster.core import keys
from broadcaster.core.eventlog import EventLog

PAGE_MAX = 500
"""The most messages a history page holds (``limit``)."""

NO_ANSWER = "idle"
"""The status of a chat seeded from an app's store and not answered since."""


class BadCursor(Exception):
    """A history page's ``before`` names no message of the chat."""


async def so_far(event_log: EventLog, record: ChatRecord) -> list[dict[str, Any]]:
    """The chat's UI messages (``record`` read whole): its history list, then its latest
    answer folded from its events while its turn is not settled (once it expired
    unsettled, what the list holds)."""
    return await folded(event_log, record, record.messages)


async def folded(
    event_log: EventLog, record: ChatRecord, submitted: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``submitted`` (the end of the chat's history), then its latest answer folded from
    its events (which extends the last of them when it continues it), unless the list
    holds it already."""
    if record.answered and not record.legacy:
        return list(submitted)
    info = await event_log.info(record.generation)
    if info is None:
        return list(submitted)
    folding = ChatMessages(submitted, record.message_id)
    async for events in event_log.read_after(record.generation, 0, info.last_seq):
        for event in events:
            folding.feed(event.json())
    return folding.result()


async def transcript(
    chats: Chats,
    event_log: EventLog,
    chat_id: str,
    record: ChatRecord | None,
    page: tuple[int, str | None] | None = None,
) -> dict[str, Any] | None:
    """The chat so far: its UI messages and the messages waiting for their turn, with
    its version; None when there is no chat."""
    if record is None:
        return None
    status = await _status(event_log, record)
    older: str | None = None
    if page is None:
        if not record.legacy:
            record = await chats.get(chat_id) or record
        messages = await folded(event_log, record, record.messages)
    else:
        messages, older = await _page(chats, event_log, record, chat_id=chat_id, page=page)
    queued = [
        {"generation_id": e["generation"], "message": e["message"]}
        for e in await chats.queued(chat_id)
    ]
    found: dict[str, Any] = {
        "id": chat_id,
        "generation_id": record.generation or None,
        "status": status,
        "messages": messages,
        "queued": queued,
        "version": record.version,
    }
    if page is not None:
        found["older"] = older
    return found


async def _status(event_log: EventLog, record: ChatRecord) -> str:
    """The latest generation's status, as ``GET /v1/generations/{id}`` says it; once it
    expired, how its settled turn ended."""
    if not record.generation:
        return NO_ANSWER
    raw = await event_log.redis.hget(keys.meta_key(record.generation), "status")
    if raw is not None:
        return cast(bytes, raw).decode()
    return record.status or "expired"


async def _page(
    chats: Chats,
    event_log: EventLog,
    record: ChatRecord,
    *,
    chat_id: str,
    page: tuple[int, str | None],
) -> tuple[list[dict[str, Any]], str | None]:
    """The newest ``limit`` messages before message ``before`` (None: the newest), oldest
    first, and the id to ask ``before`` for the page before them (None: none is left).
    Reads the history list's last message and the page's range, and folds the latest
    answer (one generation's events): never the whole chat."""
    limit, before = page
    if record.legacy:
        everything = await folded(event_log, record, record.messages)
        known = len(everything) - 1
        tail, length = everything[-1:], max(known, 0)
    else:
        fresh, length, last = await chats.tail(chat_id)
        record = fresh or record  # read with the list: its settling and the list agree
        length = max(length - 1, 0)  # the list before its last message
        tail = await folded(event_log, record, last)
        everything = []
    total = length + len(tail)
    end = total
    if before is not None:
        found = next((length + i for i, m in enumerate(tail) if m.get("id") == before), None)
        if found is None:
            found = _legacy_position(everything, before) if record.legacy else None
            if found is None and not record.legacy:
                found = await chats.position(chat_id, before)
            if found is None or found >= length:
                raise BadCursor(before)
        end = found
    start = max(0, end - limit)
    if record.legacy:
        messages = everything[start:end]
    else:
        head = await chats.history_range(chat_id, start, min(end, length))
        messages = head + tail[max(start - length, 0) : max(end - length, 0)]
    older = str(messages[0].get("id")) if start > 0 and messages else None
    return messages, older


def _legacy_position(everything: list[dict[str, Any]], message_id: str) -> int | None:
    return next((i for i, m in enumerate(everything) if m.get("id") == message_id), None)
