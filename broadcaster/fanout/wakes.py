"""The wake channels (``keys.wake_channels``): what wakes a front-end's timed work, so
that nothing of it polls Redis.

The append script publishes ``end <id>`` when a generation ends and ``wait <ms> <id>``
when a generation starts to wait for a person; a chat that gets something waiting
publishes ``chat <id>`` (``chat/records.py``). One pub/sub connection per front-end (a
``PushSubscriber`` of its own: the hub's connection comes and goes with its viewers)
carries the 256 channels, and hands each message to every listener (``woken``). When
the connection is lost, and once it is subscribed again, every listener hears ``missed``
(pushes may have been lost meanwhile: each looks at what it may have missed), so that a
lost push costs a round, not a wait until the next safety round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from broadcaster.core import contain, keys
from broadcaster.fanout.push import PushSubscriber, Resolver

log = logging.getLogger("broadcaster.wakes")

WATCH_SECONDS = 0.5
"""How often the connection's state is looked at (in the process: no command)."""


class Listener(Protocol):
    def woken(self, kind: str, arg: str) -> None: ...

    def missed(self) -> None: ...


class Wakes:
    """``run`` keeps the channels subscribed, until cancelled."""

    def __init__(
        self,
        resolver: Resolver,
        db: int,
        listeners: Sequence[Listener],
        *,
        probe_seconds: float = 5.0,
    ) -> None:
        self.channels = [c.encode() for c in keys.wake_channels(db)]
        self.listeners = list(listeners)
        self.received = 0
        self.push = PushSubscriber(
            resolver,
            self._message,
            _nothing,
            self._recovered,
            probe_seconds=probe_seconds,
        )

    async def run(self) -> None:
        async with self.push:
            await asyncio.gather(*(self.push.subscribe(c) for c in self.channels))
            self._missed()  # pushes before the subscription was confirmed
            connected = True
            while True:
                await asyncio.sleep(WATCH_SECONDS)
                now = self.push.connected
                if connected and not now:
                    log.warning("wake channels lost: their work looks for itself meanwhile")
                    self._missed()
                connected = now

    def _message(self, channel: bytes, payload: bytes) -> None:
        self.received += 1
        kind, _, arg = payload.decode(errors="replace").partition(" ")
        for listener in self.listeners:
            try:
                listener.woken(kind, arg)
            except Exception:
                contain.loop_failed("wakes", log, kind)

    def _recovered(self, channels: list[bytes]) -> None:
        self._missed()

    def _missed(self) -> None:
        for listener in self.listeners:
            try:
                listener.missed()
            except Exception:
                contain.loop_failed("wakes", log, "missed")


def _nothing() -> None:
    return None
