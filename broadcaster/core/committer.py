"""A node's committer: the writes handed to it sent in one pipeline, then one barrier
write and one ``WAIT`` (or ``WAITAOF``) on the same connection, two rounds in flight.
``Durability`` (core/durability.py) decides the policy and routes each write to its
node's committer; this module only sends rounds and judges their replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import AskError, MovedError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broadcaster.core import contain, keys

if TYPE_CHECKING:
    from broadcaster.core.durability import Policy

log = logging.getLogger("broadcaster.durability")

MAX_BATCH = 1000
"""Most writes one round of a committer carries; more wait for the next round."""
REASK_MS = 10
"""A committer that sends its ``WAIT`` apart (``fsync``) asks again this often."""
LANES = 2
"""Rounds a committer has in flight at once (``Committer.lanes``)."""
BARRIER_TTL_MS = 10_000
"""A barrier key lives this long: it only has to reach the replicas."""


class NotConfirmed(RedisConnectionError):
    """The write reached the primary (or may have), but the replicas or disks asked for
    did not confirm it in time: not acknowledged. A retry is safe (every write path is
    idempotent on retry) and, once the replicas are back, confirmed."""


Then = Callable[[list[Any]], Sequence[Sequence[Any]]]
"""From a request's replies, the commands to send once they are confirmed (the pushes
of an append: ``EventLog.append``)."""


@dataclass(slots=True)
class Request:
    calls: Sequence[Sequence[Any]]
    future: asyncio.Future[list[Any]]
    key: str
    then: Then | None = None


@dataclass(slots=True)
class Lane:
    """One connection of a committer, and the task sending rounds on it."""

    conn: AbstractConnection | None = None
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class Committer:
    """One node's writes and their ``WAIT``s, on connections of its own (``lanes``)."""

    policy: Policy
    pool: ConnectionPool
    owns_pool: bool
    pending: list[Request] = field(default_factory=list)
    lanes: list[Lane] = field(default_factory=lambda: [Lane() for _ in range(LANES)])
    """Rounds in flight at once, each on its lane's connection: while one round waits
    for its ``WAIT`` (an fsync on two disks, in ``fsync`` mode), the writes that came
    meanwhile go out in the next lane's round instead of waiting for it to end. Each
    round's writes and its ``WAIT`` still share one connection. One lane: a round at a
    time, as before (``Durability(lanes=1)``, to measure)."""
    counter: itertools.count[int] = field(default_factory=itertools.count)
    rounds: int = 0
    writes: int = 0
    reasks: int = 0
    follow: list[Sequence[Any]] = field(default_factory=list)
    """What the last confirmed round asked to send after it (``Request.then``): sent
    first in the next round, or alone. At most a round's worth (``MAX_BATCH`` requests'),
    and dropped (logged) if that send fails: the front-ends' fan-out finds what a lost
    push did not bring in the log (a gap filled, a quiet stream checked: ``fanout/repair``)."""
    wait_apart: bool = False
    """Send the ``WAIT`` only once the batch's replies are in (``fsync``), not in the
    batch's pipeline. A replica answers the primary's ``REPLCONF GETACK`` (which a
    blocked ``WAITAOF`` makes it send) with the offset it has fsynced *so far*; when the
    writes and the ``GETACK`` reach it in the same read, that is before it fsyncs them,
    and it says it has only at its next once-a-second ``ACK``: a pipelined ``WAITAOF 1 1``
    takes a second even with ``appendfsync always`` (docs/history/performance-rounds.md,
    "Durability").
    Sent after the replies, the ``GETACK`` follows the writes by a round trip, and the
    replica has fsynced them by then. ``WAIT`` (memory, not disk) has no such trap."""
    lean: bool = True
    """Rounds packed by ``pack`` and read under one timeout (``_exchange``)."""

    def submit(self, request: Request) -> None:
        self.pending.append(request)
        for lane in self.lanes:
            if lane.task is None or lane.task.done():
                lane.task = asyncio.create_task(self._drain(lane), name="durability-committer")
                return  # an idle lane takes it
        # every lane is in a round: the first to end takes it

    async def _drain(self, lane: Lane) -> None:
        while self.pending or self.follow:
            await asyncio.sleep(0)  # the writers of this turn of the loop join the round
            batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            batch = [r for r in batch if not r.future.done()]  # a cancelled writer
            if not batch:
                await self._send_follow(lane)
                continue
            try:
                replies = await self._round(lane, batch)
            except asyncio.CancelledError:
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(RedisConnectionError("the process is stopping"))
                raise
            except Exception as exc:
                await self._drop(lane)
                self.follow = []  # sent or not with the failed round: see ``follow``
                if not isinstance(exc, (RedisConnectionError, RedisTimeoutError, ResponseError)):
                    # The connection broke under the round in a way the client does not
                    # name (seen: a reader or writer gone mid-send): nothing is confirmed,
                    # and the writer retries it as a lost connection.
                    exc = NotConfirmed(f"not confirmed: the round failed ({exc!r})")
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(exc)
                continue
            for r, reply in zip(batch, replies, strict=True):
                if not r.future.done():
                    r.future.set_result(reply)

    async def _round(self, lane: Lane, batch: list[Request]) -> list[list[Any]]:
        """Send the batch, a barrier and the ``WAIT`` on ``lane``; each request's replies,
        or ``NotConfirmed`` in place of all of them."""
        if lane.conn is None:
            lane.conn = await self.pool.get_connection()  # type: ignore[no-untyped-call]
        conn = lane.conn
        follow, self.follow = self.follow, []
        commands: list[Sequence[Any]] = [*follow, *(c for r in batch for c in r.calls)]
        commands.append(
            ("SET", keys.barrier_key(batch[0].key), next(self.counter), "PX", BARRIER_TTL_MS)
        )
        read_timeout = self.policy.timeout_ms / 1000 + 5.0
        if self.wait_apart:
            # WAITAOF after the writes' replies, in a second send: see ``wait_apart``.
            replies = await _exchange(conn, commands, read_timeout, self.lean)
            replies.append(await self._wait_apart(conn, read_timeout))
        else:
            commands.append(self.policy.wait_command())
            replies = await _exchange(conn, commands, read_timeout, self.lean)
        self.rounds += 1
        self.writes += len(batch)
        replies = replies[len(follow) :]  # (a push's reply says nothing: dropped)
        barrier, waited = replies[-2], replies[-1]
        if isinstance(barrier, (MovedError, AskError)):
            return [[barrier] for _ in batch]  # the slot moved: each writer asks again
        if isinstance(barrier, Exception) or not self.policy.confirmed(waited):
            why = barrier if isinstance(barrier, Exception) else waited
            error = NotConfirmed(
                f"not confirmed: {self.policy.describe()}; the server said {why!r}"
            )
            raise error
        out, at = [], 0
        for r in batch:
            mine = replies[at : at + len(r.calls)]
            out.append(mine)
            at += len(r.calls)
            if r.then is not None and not any(isinstance(x, Exception) for x in mine):
                self.follow.extend(r.then(mine))
        return out

    async def _send_follow(self, lane: Lane) -> None:
        """Send what confirmed rounds asked to send after them, when no round follows."""
        follow, self.follow = self.follow, []
        if not follow:
            return
        try:
            if lane.conn is None:
                lane.conn = await self.pool.get_connection()  # type: ignore[no-untyped-call]
            await _exchange(lane.conn, follow, self.policy.timeout_ms / 1000 + 5.0, self.lean)
        except Exception as exc:  # a push lost is found again (``follow``)
            await self._drop(lane)
            log.warning(
                "durability: %d push(es) after a confirmed round lost: %r", len(follow), exc
            )

    async def _wait_apart(self, conn: AbstractConnection, read_timeout: float) -> Any:
        """The policy's ``WAIT`` in steps of ``REASK_MS``, until it confirms or its
        timeout passes: each step blocks anew, so the primary asks the replicas again
        (``REPLCONF GETACK``), and a replica that answered the last ask before its
        fsync answers this one after it, instead of at its next once-a-second ``ACK``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.timeout_ms / 1000
        for ask in itertools.count():
            left_ms = max(1, int((deadline - loop.time()) * 1000))
            step = min(left_ms, 1 << min(ask, 8), REASK_MS)  # 1, 2, 4, 8, 10, 10... ms
            (waited,) = await _exchange(
                conn, [self.policy.wait_command(step)], read_timeout, self.lean
            )
            if (
                isinstance(waited, Exception)  # an answer, not a wait: asked again, the same
                or self.policy.confirmed(waited)
                or loop.time() >= deadline
            ):
                return waited
            self.reasks += 1
        raise AssertionError("unreachable")  # pragma: no cover: count() never ends

    async def _drop(self, lane: Lane) -> None:
        """Close the lane's connection after a failed round: its state is unknown."""
        conn, lane.conn = lane.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect()
            with contextlib.suppress(Exception):
                await self.pool.release(conn)

    async def aclose(self) -> None:
        for lane in self.lanes:
            if lane.task is not None:
                await contain.cancel_until_ended([lane.task], raising=False)
            await self._drop(lane)
        if self.owns_pool:
            await self.pool.disconnect()


async def _exchange(
    conn: AbstractConnection, commands: Sequence[Sequence[Any]], read_s: float, lean: bool = True
) -> list[Any]:
    """Send ``commands`` in one write and read each reply (an error reply in its place),
    all within ``read_s``. ``lean`` (off only to measure what it replaced,
    ``tests/perf/durability.py``): packed by ``pack``, read under one timeout, since
    redis-py's packing and per-reply timeouts were most of a committer's CPU."""
    if not lean:
        await conn.send_packed_command(conn.pack_commands(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await conn.read_response(timeout=read_s))
            except ResponseError as exc:
                replies.append(exc)
        return replies
    await conn.send_packed_command(pack(commands))
    replies = []
    async with asyncio.timeout(read_s):
        for _ in commands:
            try:
                replies.append(await conn.read_response(timeout=math.inf))
            except ResponseError as exc:
                replies.append(exc)
    return replies


def pack(commands: Sequence[Sequence[Any]]) -> bytes:
    """``commands`` in RESP, one ``bytes``: what redis-py's ``pack_commands`` sends for
    the arguments a committer is given (``bytes``, ``str`` as UTF-8, ``int``, ``float``),
    without its per-argument checks. Anything else is refused, as redis-py refuses it."""
    out: list[bytes] = []
    add = out.append
    for command in commands:
        add(b"*%d\r\n" % len(command))
        for arg in command:
            if isinstance(arg, bytes):
                data = arg
            elif isinstance(arg, str):
                data = arg.encode()
            elif isinstance(arg, int) and not isinstance(arg, bool):
                data = b"%d" % arg
            elif isinstance(arg, float):
                data = repr(arg).encode()
            else:
                raise TypeError(f"a Redis command argument, not {type(arg).__name__}")
            add(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)
