"""Who follows a chat across its turns (``GET /v1/chat/{id}/events``), and what wakes
them: a submit that makes a generation a chat's latest publishes ``turn <chat id>`` on
the wake channels (``records.Chats.submit``), and this listener of them
(``fanout/wakes.py``) sets the event of every follower of that chat on this front-end.
A follower waiting between turns thus holds an event, not a loop; lost pushes
(``missed``) wake every follower, which looks again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class ChatFollowers:
    def __init__(self) -> None:
        self._by_chat: dict[str, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def follow(self, chat_id: str) -> Iterator[asyncio.Event]:
        """An event set at each new turn of ``chat_id`` (the follower clears it before
        it looks, so a turn that starts meanwhile is not missed)."""
        event = asyncio.Event()
        self._by_chat.setdefault(chat_id, set()).add(event)
        try:
            yield event
        finally:
            held = self._by_chat.get(chat_id)
            if held is not None:
                held.discard(event)
                if not held:
                    del self._by_chat[chat_id]

    def woken(self, kind: str, arg: str) -> None:
        """A push on the wake channels: ``turn <chat id>``."""
        if kind == "turn":
            for event in self._by_chat.get(arg, ()):
                event.set()

    def missed(self) -> None:
        for events in self._by_chat.values():
            for event in events:
                event.set()

    @property
    def followers(self) -> int:
        return sum(len(events) for events in self._by_chat.values())
