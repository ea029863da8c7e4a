"""``GET /v1/chat/{id}/events``: one SSE response that follows a chat, not an answer:
every answer in turn, each announced by a transient ``data-chat-turn`` chunk, resumable
across turns by ids ``<turn>:<seq>.<tag>`` (the announcement's ``<turn>:0``). Without
``Last-Event-ID`` it starts with the latest answer from its start. Between turns it
holds one event of ``chat/followers.py`` and sends keepalives: one subscription at a
time, nothing buffered beyond the hub's. Answers' ``[DONE]`` are left out; an expired
turn is skipped. docs/api/chats.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from broadcaster.chat.followers import ChatFollowers
from broadcaster.chat.records import Chats
from broadcaster.core import names, sse
from broadcaster.core.events import dump_event
from broadcaster.core.logconfig import current_stream
from broadcaster.core.sse import Writer
from broadcaster.viewers.ask import ViewerAsk, kept_grant
from broadcaster.viewers.headers import UI_MESSAGES
from broadcaster.viewers.opening import Viewing, admit_viewer, viewing_of
from broadcaster.viewers.refusals import Refusal
from broadcaster.viewers.response import SSEResponse

TURN_CHUNK = "data-chat-turn"
"""The transient chunk that opens each answer on the chat's stream."""


def parse_resume_point(raw: str) -> tuple[int, int]:
    """``<turn>:<seq>[.<tag>]`` as (turn, seq); 400 for anything else."""
    found = names.chat_resume_point(raw)
    if found is None:
        raise Refusal(
            400,
            "bad_resume_point",
            "Last-Event-ID of a chat's stream is <turn>:<seq>[.<tag>], as its frames' ids",
        )
    return found


def with_turn(chunk: bytes, turn: int) -> bytes:
    """A generation's SSE bytes as the chat's: each frame's id prefixed with its turn,
    ``[DONE]`` left out. Frames hold one-line JSON, so ``id: `` and ``data: [DONE]`` at a
    line's start are only ever fields."""
    prefix = b"%d:" % turn
    chunk = chunk.replace(b"\n" + sse.DONE, b"\n")
    if chunk.startswith(sse.DONE):
        chunk = chunk[len(sse.DONE) :]
    chunk = chunk.replace(b"\nid: ", b"\nid: " + prefix)
    return b"id: " + prefix + chunk[4:] if chunk.startswith(b"id: ") else chunk


def announcement(turn: int, generation: str, message: Any) -> bytes:
    event = {
        "type": TURN_CHUNK,
        "data": {"turn": turn, "generationId": generation, "userMessage": message},
        "transient": True,
    }
    _, data = dump_event(event)
    return b"id: %d:0\ndata: %s\n\n" % (turn, data)


async def chat_events(request: Request, chat_id: str, ask: ViewerAsk) -> Response:
    """The chat's stream, after ``ask``'s resume point (access is the caller's to check)."""
    chats: Chats = request.app.state.chats
    followers: ChatFollowers = request.app.state.chat_followers
    viewing = viewing_of(request)
    if ask.resume:
        turn, after = parse_resume_point(ask.resume)
        compact = False
    else:
        record = await chats.get(chat_id, whole=False)
        turn, after, compact = (record.turn if record else 0) or 1, 0, True
    slot = await admit_viewer(request, ask)
    follow = _Follow(viewing, chats, chat_id, followers)

    def body(writer: Writer | None) -> AsyncIterator[bytes]:
        return follow.frames(turn, after, compact)

    return SSEResponse(
        body,
        first=viewing.retry_field(),
        headers=UI_MESSAGES,
        send_timeout=viewing.settings.send_timeout,
        stream_id="",
        on_cut_off=viewing.cut_off,
        on_end=slot.release,
        token=viewing.held(kept_grant(request), ask.token),
    )


class _Follow:
    """One viewer of a chat's stream."""

    def __init__(
        self, viewing: Viewing, chats: Chats, chat_id: str, followers: ChatFollowers
    ) -> None:
        self.viewing = viewing
        self.chats = chats
        self.chat_id = chat_id
        self.followers = followers

    async def frames(self, turn: int, after: int, compact: bool) -> AsyncIterator[bytes]:
        """Turn ``turn`` after its event ``after``, then every turn after it, live."""
        hub, log = self.viewing.hub, self.viewing.log
        assert hub is not None and log is not None
        keepalive = self.viewing.settings.keepalive
        with self.followers.follow(self.chat_id) as woken:
            while not hub.closing:
                woken.clear()  # before looking: a turn started meanwhile sets it again
                found = await self.chats.turn(self.chat_id, turn)
                if found is None:
                    if await self._skipped(turn):
                        turn, after = turn + 1, 0
                        continue
                    # Between turns, only a wake looks again (a lost push wakes every
                    # follower): a keepalive asks Redis nothing.
                    while not (woken.is_set() or hub.closing):
                        try:
                            await asyncio.wait_for(woken.wait(), keepalive)
                        except TimeoutError:
                            yield sse.PING
                    continue
                generation = str(found["generation"])
                current_stream.set(generation)
                info = await log.info(generation)
                if info is not None and after <= info.last_seq:
                    if after == 0:
                        yield announcement(turn, generation, found.get("message"))
                    chunks = hub.follow(generation, after, info, compact=compact)
                    async for chunk in chunks:
                        yield with_turn(chunk, turn)
                    now = await log.info(generation)
                    if now is not None and not now.ended:
                        return  # cut off, or the hub drains: the client resumes
                turn, after, compact = turn + 1, 0, False

    async def _skipped(self, turn: int) -> bool:
        """Whether ``turn`` is gone for good (the chat has later turns): then it is
        passed over; else it is yet to come."""
        record = await self.chats.get(self.chat_id, whole=False)
        return record is not None and record.turn > turn
