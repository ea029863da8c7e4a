"""uvicorn's request cycle as the front-end extends it: a response that may outlive its
task (``DetachableCycle``), the connection it writes to and ends, bound to it
(``Offer``), its first writes held and sent as one (``HeldWrites``), and what uvicorn
makes per connection, smaller (``LazyEvent``, ``Pipeline``)."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle


class LazyEvent(asyncio.Event):
    """An ``asyncio.Event`` whose waiters' deque (760 bytes) is made when someone first
    waits: uvicorn makes two for every connection, and an SSE viewer's waits on neither."""

    _w: collections.deque[asyncio.Future[bool]] | None = None

    def __init__(self) -> None:  # no deque: ``_waiters`` makes it
        self._value = False

    @property
    def _waiters(self) -> collections.deque[asyncio.Future[bool]]:  # type: ignore[override]
        w = self._w
        if w is None:
            w = self._w = collections.deque()
        return w

    def set(self) -> None:
        if not self._value:
            self._value = True
            for fut in self._w or ():
                if not fut.done():
                    fut.set_result(True)


class LeanFlow(FlowControl):
    """uvicorn's flow control, its writable event a ``LazyEvent`` (uvicorn's own holds a
    deque of 760 bytes that an open viewer never waits on): ``__init__`` is a copy of
    uvicorn's (tests/unit/test_uvicorn_pin.py)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        writable = self._is_writable_event = LazyEvent()
        writable._value = True


class Pipeline(list[Any]):
    """uvicorn's queue of pipelined requests, as a list (56 bytes empty, where its deque
    is 760): it only ever holds a request or two."""

    __slots__ = ()

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


OPEN, WRITTEN, ENDED = 0, 1, 2
"""A detached response's end (``DetachableCycle.ended``): not written; written by the
fan-out (its ``on_response`` still to come); over."""


class DetachableCycle(RequestResponseCycle):
    """uvicorn's request cycle, whose response may outlive the app's call
    (``seam.Connection.detach``): once detached, the app returning with the response
    unfinished leaves the connection open, and the response's end still starts the
    connection's next request (or its keep-alive timeout)."""

    detached = False
    ended = OPEN

    async def run_asgi(self, app: Any) -> None:
        """uvicorn's, except for a detached response (its ``else`` and ``finally``)."""
        try:
            result = await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self.send_500_response()
            else:
                self.transport.close()
        else:
            if result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
                self.transport.close()
            elif not self.response_started and not self.disconnected:
                self.logger.error("ASGI callable returned without starting response.")
                await self.send_500_response()
            elif not self.response_complete and not self.disconnected and not self.detached:
                self.logger.error("ASGI callable returned without completing response.")
                self.transport.close()
        finally:
            if not self.detached:
                self.on_response = lambda: None


class HeldWrites:
    """A transport whose writes wait in memory until ``release`` (or ``close``), then go
    out as one (``DirectWriteProtocol._hold_writes``); anything else is the real one's."""

    __slots__ = ("_held", "real")

    def __init__(self, real: Any) -> None:
        self.real = real
        self._held: list[bytes] | None = []

    def write(self, data: bytes) -> None:
        if self._held is None:
            self.real.write(data)
        else:
            self._held.append(data)

    def release(self) -> None:
        held, self._held = self._held, None
        if held and not self.real.is_closing():
            self.real.write(b"".join(held))

    def close(self) -> None:
        self.release()
        self.real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)
