"""A model call closes its provider's event stream itself when it ends, before the
provider closes its response: a generator left suspended would be finalized later by
whichever thread's garbage collection found it (worker/model_call.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

from worker.mapping import EventMapper
from worker.metrics import CallTiming
from worker.model_call import Policy, _Call
from worker.providers.anthropic_stream import AnthropicReader
from worker.providers.fake import fake_events
from worker.providers.parts import Delta, ModelEvent
from worker.writer import StreamWriter

REQUEST = {"prompt": "hello", "provider": "fake"}


class Chatty:
    """A provider whose stream goes on after the message's end (as a server's pings
    would): the call stops reading at its ``MessageEnd`` and leaves the rest unread."""

    def __init__(self) -> None:
        self.closed_at: list[str] = []  # in the order things were closed

    @asynccontextmanager
    async def stream(self, request: dict[str, Any]) -> AsyncIterator[AsyncIterator[ModelEvent]]:
        try:
            yield self._events(request)
        finally:
            self.closed_at.append("response")

    async def _events(self, request: dict[str, Any]) -> AsyncIterator[ModelEvent]:
        reader = AnthropicReader()
        try:
            for raw in fake_events(request):
                for event in reader.feed(raw):
                    yield event
            while True:  # never awaits: only the reader's queue holds it back
                yield Delta(99, "ping")  # of no part: maps to nothing
        finally:
            self.closed_at.append("events")


def test_the_events_are_closed_when_the_call_ends_before_the_response() -> None:
    provider = Chatty()
    writer = StreamWriter(SimpleNamespace(log=None), "g", "owner", 0)  # type: ignore[arg-type]
    # A queue of one: the reader is held at its put, the generator at its yield.
    policy = Policy(merge_s=60, queue_size=1)
    call = _Call(writer, policy, EventMapper("m"), False, CallTiming(None, "fake"))

    async def main() -> list[str]:
        await call.run(provider, REQUEST)  # type: ignore[arg-type]
        return list(provider.closed_at)  # at once, before the loop runs anything else

    assert asyncio.run(main()) == ["events", "response"]
    assert call.mapper.finished
    kinds = [e["type"] for e in writer.pending]
    assert kinds[:2] == ["start", "start-step"] and "text-end" in kinds, kinds
