"""CPU work a request brings beyond a small size (parsing, checking and converting a large
body; decoding, converting and encoding a whole chat history; encoding what is stored from
a large body: a chat record's messages, a generation's request) done off the event loop,
so that it never stalls the front-end's other connections: a few threads, and a bound
on the work that waits for them (503 ``busy`` beyond).

Threads, not processes: what they return is used on the loop, and handing a parsed body
back from a process costs what parsing it did. They share the interpreter's lock with
the loop, which asks for it back after each of its system calls (every socket read and
write, every wait for one): a thread running Python code hands it over after the switch
interval (``BROADCASTER_SWITCH_INTERVAL_MS``, set lower than Python's 5 ms, which the loop
paid once per system call), and one running a C function (``json.loads``, a pydantic
validation) only when that returns, so the work given to them is cut into calls that each
stay small: the bounds on a body (bytes, JSON values, messages) are what keep them so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from functools import partial
from typing import Any, ParamSpec, TypeVar

from fastapi.responses import Response

from broadcaster.chat.records import kept_as, message_json, model_turns
from broadcaster.generations.lifecycle import request_json
from broadcaster.http.errors import ApiError

P = ParamSpec("P")
T = TypeVar("T")

INLINE_BYTES = 64 * 1024
"""Work on less than this many bytes runs on the loop: a hop to a thread costs more."""

BODY_BYTES: ContextVar[int] = ContextVar("body_bytes", default=0)
"""The size of the body the request being served sent (``bodies.read_bytes`` sets it):
the weight of what is made from it later, such as its generation's request."""


class Offloop:
    """A small thread pool for a front-end's request work, with a bound on what waits."""

    def __init__(self, threads: int, waiting: int) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="offloop")
        self._room = threads + waiting
        self._taken = 0

    def check_room(self) -> None:
        """503 ``busy`` when the threads are taken and as much work waits as allowed (a
        client that sends large bodies as fast as it can is refused rather than queued
        without end)."""
        if self._taken >= self._room:
            raise ApiError(
                503,
                "busy",
                "this front-end is busy with other large requests; retry shortly",
                headers={"retry-after": "1"},
            )

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` in a thread, once ``check_room`` lets it wait."""
        self.check_room()
        return await self._submit(partial(fn, *args, **kwargs))

    async def _submit(self, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future = self._pool.submit(work)
        # Counted until the thread is done, not until the caller stops waiting: a client
        # that hangs up leaves its work running, and it still takes room.
        self._taken += 1
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._done))
        return await asyncio.wrap_future(future)

    def _done(self) -> None:
        self._taken -= 1

    async def run_sized(
        self, size: int, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``run``, or on the loop when ``size`` (bytes of input) is under
        ``INLINE_BYTES``."""
        if size < INLINE_BYTES:
            return fn(*args, **kwargs)
        return await self.run(fn, *args, **kwargs)

    async def queued(self, size: int, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``run_sized``, never refused: work that other bounds admitted (a background
        round, one at a time; a whole history a route checked the room for first; a run's
        history once its answer started, which a refusal would leave unanswered). It
        still takes room, so that new requests see it."""
        if size < INLINE_BYTES:
            return fn(*args, **kwargs)
        return await self._submit(partial(fn, *args, **kwargs))

    async def decoded(self, items: list[bytes]) -> list[Any]:
        """JSON ``items`` (a chat's history list read whole: ``Chats.decode``), one call
        each, in a thread when together they are large (``run_sized``: 503 ``busy`` when
        the pool is full)."""
        return await self.run_sized(sum(map(len, items)), _decoded, items)

    async def decoded_admitted(self, items: list[bytes]) -> list[Any]:
        """``decoded``, never refused (``queued``)."""
        return await self.queued(sum(map(len, items)), _decoded, items)

    async def kept(self, messages: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
        """What a chat's record keeps of each message, its JSON and model turns
        (``Chats.kept``), one call each; never refused: the submit or seed that writes
        them was admitted. Many messages (``ITEM_BYTES`` each), or any that came in a
        large body (``BODY_BYTES``: a few huge ones), are encoded in a thread; a few on
        the loop, and their model turns in a thread once that JSON is large."""
        if max(len(messages) * ITEM_BYTES, BODY_BYTES.get()) >= INLINE_BYTES:
            return await self._submit(partial(kept_as, messages))
        raws = [message_json(m).encode() for m in messages]
        turns = await self.queued(sum(map(len, raws)), _model_turns, messages)
        return [(raw, turn.encode()) for raw, turn in zip(raws, turns, strict=True)]

    async def request_json(self, request: dict[str, Any]) -> bytes:
        """A generation's request as its metadata keeps it (``Generations.encode``), in
        a thread when the body it came from was large (``BODY_BYTES``); never refused:
        the generation was admitted."""
        return await self.queued(BODY_BYTES.get(), request_json, request)

    async def aclose(self) -> None:
        """Drop the work that waits and stop the threads once the work they hold is done
        (the app's shutdown), without blocking the loop meanwhile."""
        await asyncio.to_thread(self._pool.shutdown, True, cancel_futures=True)

    async def json_response(
        self, value: Any, items: int, headers: dict[str, str] | None = None
    ) -> Response:
        """``value`` as a JSON answer, byte for byte what ``JSONResponse`` makes, encoded
        off the loop when it holds many items (``items``: a whole chat's messages)."""
        body = await self.run_sized(items * ITEM_BYTES, _encoded, value)
        return Response(body, media_type="application/json", headers=headers)


ITEM_BYTES = 1024
"""What one item of an answer is taken to weigh, to decide where it is encoded."""


def _model_turns(messages: list[dict[str, Any]]) -> list[str]:
    return [model_turns(m) for m in messages]


def _decoded(items: list[bytes]) -> list[Any]:
    return [json.loads(item) for item in items]


def _encoded(value: Any) -> bytes:
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode()
