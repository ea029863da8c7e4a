"""A Durable Streams read as ``GET /v1/stream/{path}`` answers it: a page of what follows
an offset (with its ``ETag``), a long-poll held until an event (or its token's end), or
SSE; each live read admitted as a viewer is, and ended with its token."""

from __future__ import annotations

import time

from fastapi import Request
from fastapi.responses import Response

from broadcaster.durable import protocol, reads
from broadcaster.durable.protocol import ReadOffset
from broadcaster.durable.storage import DurableLog
from broadcaster.http.resources import get_hub, get_settings
from broadcaster.viewers.ask import from_request, kept_grant
from broadcaster.viewers.decision import token_ended
from broadcaster.viewers.expiry import TokenBound, closes
from broadcaster.viewers.opening import admit_long_poll, admit_viewer, viewing_of
from broadcaster.viewers.response import SSEResponse


def _cache_control(request: Request) -> str:
    """A page's caching: shared caches may keep it unless reads need a credential."""
    private = request.app.state.access.reads_guarded
    return f"{'private' if private else 'public'}, max-age=60, stale-while-revalidate=300"


async def catch_up(
    request: Request, durable: DurableLog, name: str, offset: ReadOffset, raw: str
) -> Response:
    """A page of what follows ``offset`` (``raw``: as the request wrote it, for the
    ``ETag``); 304 when the client holds it already."""
    page = await reads.catch_up(durable, name, offset)
    if offset == "now":
        ct = page.state.content_type
        headers = protocol.offset_headers(
            page.next_offset, ct, up_to_date=True, cache="no-store", closed=page.closed
        )
        return Response(page.body, headers=headers)
    headers = page.headers
    tag = protocol.etag(name, raw, page.next_offset, page.closed)
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=304, headers={"etag": tag})
    headers |= {"etag": tag, "cache-control": _cache_control(request)}
    return Response(page.body, headers=headers)


async def long_poll(
    request: Request, durable: DurableLog, name: str, offset: ReadOffset, cursor: str | None
) -> Response:
    """``live=long-poll``: a page once one follows ``offset``, or 204 when the wait (no
    longer than the token lives) ends; a revoked token's error at once."""
    hub, settings = await get_hub(request), await get_settings(request)
    ask = from_request(request)
    slot = await admit_long_poll(request, ask)
    held = viewing_of(request).held(kept_grant(request), ask.token, closes)
    wait = settings.ds_long_poll_seconds
    if held is not None:  # it answers as a poll that waited, when its token expires
        wait = max(0.0, min(wait, held.entry.ends_at - time.time()))
    with TokenBound(held) as bound:  # and at once, when its token is revoked
        polled = await reads.long_poll(hub, durable, name, offset, wait, release=slot.release)
    if bound.reason is not None:
        raise token_ended(bound.reason)
    headers_cursor = {protocol.CURSOR: protocol.response_cursor(cursor)}
    if isinstance(polled, reads.Page):
        raw = protocol.format_offset(reads.poll_after(offset) or 0, "")
        headers = polled.headers | headers_cursor
        headers |= {
            "etag": protocol.etag(name, raw, polled.next_offset, polled.closed),
            "cache-control": _cache_control(request),
        }
        return Response(polled.body, headers=headers)
    headers = protocol.offset_headers(
        polled.next_offset, up_to_date=True, cache="no-store", closed=polled.closed
    )
    if not polled.closed:
        headers |= headers_cursor
    return Response(status_code=204, headers=headers)


async def sse(
    request: Request, durable: DurableLog, name: str, offset: ReadOffset, cursor: str | None
) -> Response:
    """``live=sse``: what follows ``offset``, then live, until the token ends."""
    hub, viewing = await get_hub(request), viewing_of(request)
    mode, reader = await reads.sse(hub, durable, name, offset, cursor)
    ask = from_request(request, [name])
    slot = await admit_viewer(request, ask)
    return SSEResponse(
        reader,
        first=b"",
        headers=protocol.sse_headers(mode),
        send_timeout=viewing.settings.send_timeout,
        stream_id=name,
        on_cut_off=viewing.cut_off,
        on_end=slot.release,
        # The protocol's own end: the connection closes, and the client reconnects from
        # the offset it was sent last (with a new token).
        token=viewing.held(kept_grant(request), ask.token, closes),
    )
