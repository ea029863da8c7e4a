"""Forks (a ``PUT`` with ``Stream-Forked-From``): copy-on-fork. The source's entries up to
the fork point are copied into the fork's own slot, pending (no stream to readers) until
complete; the source counts it among its forks. A fork that cannot be made raises a
``Refused`` saying why, after removing what was made of it.

Two steps, so that the caller can check what it must in between (the body, the budget):
``plan`` finds the fork point and what the fork inherits, ``make`` makes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from broadcaster.core.keys import DATA
from broadcaster.durable import live, protocol
from broadcaster.durable.protocol import Creation, Mode, Offset
from broadcaster.durable.reads import holds
from broadcaster.durable.storage import DurableLog, Entry, State, Written

Charge = Callable[[int], Awaitable[None]]
"""Counts bytes the fork is about to copy against a budget; raises to refuse them."""


class Refused(Exception):
    """A fork that is not made; the message says why."""


class BadFork(Refused):
    """The fork's headers name no fork point of the source."""


class NoSource(Refused):
    """No stream to fork at the source."""


class Conflict(Refused):
    """The source or the fork's path is in a state that refuses the fork."""


class Busy(Conflict):
    """A fork with the same configuration is being made at the path: retry."""


def source_path(source: str) -> str:
    """The path under ``/v1/stream/`` that ``Stream-Forked-From`` names (a URL or an
    absolute path)."""
    src_path = source.split("://", 1)[-1]
    if "://" in source:
        src_path = "/" + src_path.split("/", 1)[-1]
    if not src_path.startswith("/v1/stream/"):
        raise BadFork("Stream-Forked-From must be a /v1/stream/ path")
    return src_path.removeprefix("/v1/stream/")


@dataclass(frozen=True, slots=True)
class Plan:
    """A fork to make: its source, the point it forks at and what it inherits."""

    source: str
    """The source as the client named it."""
    src: str
    """The source's stream name."""
    fork_offset: str
    """``Stream-Fork-Offset`` as the client sent it ("" for the source's tail)."""
    sub: int
    content_type: str
    ttl: int | None
    expires_at: int | None
    at: tuple[int, str]
    """The seq and history tag of the fork point."""
    partial: list[Entry]
    """The part of the append after the fork point that the sub-offset takes."""


async def plan(log: DurableLog, src: str, asked: Creation, content_type: str) -> Plan:
    """The fork ``asked`` for, of the stream ``src`` (``asked.forked_from``): its content
    type must be the source's (or none), its expiry is the source's unless it has its
    own."""
    source = asked.forked_from or ""
    state, at_seq, at_tag = await _fork_point(log, src, source, asked.anchor)
    if content_type and content_type != state.content_type:
        raise Conflict("the fork's Content-Type differs from its source's")
    ttl, expires_at = asked.ttl, asked.expires_at
    if ttl is None and expires_at is None:
        ttl, expires_at = state.ttl, state.expires_at
    mode = protocol.mode_of(state.content_type)
    partial = await _sub_offset(log, src, at_seq, asked.sub, mode)
    return Plan(
        source,
        src,
        asked.fork_offset or "",
        asked.sub,
        state.content_type,
        ttl,
        expires_at,
        (at_seq, at_tag),
        partial,
    )


async def make(
    log: DurableLog,
    name: str,
    fork: Plan,
    *,
    closed: bool,
    entries: list[tuple[str, bytes]],
    charge: Charge,
) -> Written:
    """Make ``fork`` at ``name``, then append ``entries`` to it (and close it if
    ``closed``); each page copied is given to ``charge`` first. What the stream at
    ``name`` said if it is not created there (the same configuration, or another)."""
    created = await log.create(
        name,
        fork.content_type,
        ttl=fork.ttl,
        expires_at=fork.expires_at,
        closed=closed,
        fork=(fork.src, fork.fork_offset, fork.sub),
    )
    if created.status == "PENDING":
        raise Busy("a fork with this configuration is being made here; retry")
    if created.status != "CREATED":
        return created
    try:
        await _inherit(log, fork, name, charge)
        written = await log.append(name, fork.content_type, entries, close=closed, finalize=True)
        if written.status != "OK":
            raise Conflict(f"the fork could not be finished ({written.status})")
    except BaseException:
        await log.discard(name)
        await log.unfork(fork.src, name)
        raise
    return Written("CREATED", written.tail, written.tail_tag, written.closed)


async def _fork_point(
    log: DurableLog, src: str, source: str, anchor: Offset | None
) -> tuple[State, int, str]:
    """The source's state and the seq and tag it forks at: ``NoSource`` for no source,
    ``Conflict`` for a deleted one, ``BadFork`` for an offset it does not hold."""
    state, _ = await log.read(src, anchor.seq if anchor else 0)
    if state is None or state.pending:
        raise NoSource(f"no stream at {source[:80]} to fork")
    if state.deleted:
        raise Conflict(f"{source[:80]} was deleted: it cannot be forked")
    if anchor is None:
        return state, state.tail, state.tail_tag
    if anchor.seq > state.tail:
        raise BadFork("Stream-Fork-Offset is beyond the source's tail")
    if not holds(state, anchor) or (anchor.seq == 0 and anchor.tag):
        raise BadFork("Stream-Fork-Offset is not an offset of the source")
    return state, anchor.seq, state.tag_at


async def _inherit(log: DurableLog, fork: Plan, name: str, charge: Charge) -> None:
    """Count the fork among its source's, then copy what it inherits, a page at a time,
    each given to ``charge`` before it is copied."""
    src, source, at = fork.src, fork.source, fork.at
    registered = await log.fork_register(src, name, *at)
    if registered.status != "OK":
        raise {
            "NOSTREAM": NoSource(f"no stream at {source[:80]} to fork"),
            "DELETED": Conflict(f"{source[:80]} was deleted"),
        }.get(registered.status, BadFork("Stream-Fork-Offset is not an offset of the source"))
    after = 0
    while after < at[0]:
        page = await log.entries(src, after, min(at[0], after + live.PAGE_ENTRIES))
        if not page:
            raise Conflict(f"{source[:80]} changed while it was forked")
        await charge(sum(len(e.data) for e in page))
        if not await log.copy(name, page):
            raise Conflict("the fork was removed while it was made")
        after = page[-1].seq
    await charge(sum(len(e.data) for e in fork.partial))
    if fork.partial and not await log.copy(name, fork.partial):
        raise Conflict("the fork was removed while it was made")


async def _sub_offset(log: DurableLog, src: str, at: int, sub: int, mode: Mode) -> list[Entry]:
    """The part of the append after the fork point that a sub-offset takes: ``sub`` JSON
    messages, or ``sub`` bytes; ``BadFork`` if that append has fewer."""
    if sub == 0:
        return []
    append: list[Entry] = []
    for entry in await log.entries(src, at, at + (sub if mode == "json" else 1)):
        if not entry.is_data:
            break
        append.append(entry)
        if entry.ends_append:
            break
    if mode == "json":
        if sub > len(append):
            raise BadFork("Stream-Fork-Sub-Offset is past the next append")
        taken = append[:sub]
        return [*taken[:-1], Entry(taken[-1].seq, DATA, taken[-1].data, "")]
    if not append or sub > len(append[0].data):
        raise BadFork("Stream-Fork-Sub-Offset is past the next append")
    return [Entry(append[0].seq, DATA, append[0].data[:sub], "")]
