"""``/v1/stream/{path}``: the Durable Streams protocol (ElectricSQL's open HTTP protocol for
append-only streams with offsets), on the same Redis log and the same fan-out as every
other stream (docs/durable-streams.md).

``PUT`` creates (or forks), ``POST`` appends and closes, ``DELETE`` deletes, ``HEAD`` tells
where a stream is, and ``GET`` reads: catch-up pages, ``live=long-poll`` and ``live=sse``.
The names of this project's own streams (generations, chats' answers, job feeds) are
Durable Streams too, readable here as ``application/json`` streams of one message per
event, closed at the terminal event; writes to them are 405.

Access is as everywhere else: creating, appending and deleting need an API key with the
``publish`` right or a token whose ``publish`` covers the path (when keys are
configured), reading needs a token whose ``read`` covers the path (when tokens are
configured).

Stored bytes never run as a page of the API's origin: an answer in a stream's own type,
unless JSON, plain text or octet-stream, is sandboxed and an attachment (``_typed``).
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import unquote_to_bytes

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broadcaster.core import keys, names
from broadcaster.core.keys import DATA, MORE
from broadcaster.durable import live, protocol
from broadcaster.durable.protocol import BadRequest, Mode, Offset
from broadcaster.durable.storage import DurableLog, Entry, State, Written
from broadcaster.http import openapi_durable as api_doc
from broadcaster.http.access import check_viewer, presented_key, producer
from broadcaster.http.bodies import read_bytes
from broadcaster.http.errors import ApiError
from broadcaster.http.limits import ForkBudget, fork_payer, fork_room
from broadcaster.http.resources import SettingsDep, get_hub, get_settings
from broadcaster.http.routes.streams import admit_long_poll, admit_viewer
from broadcaster.http.sse_response import SSEResponse

router = APIRouter()

PATH = "/v1/stream/{path:path}"
RESERVED = "__ds"
"""The protocol reserves paths under ``__ds/`` for its subscription APIs, which this server
does not offer (docs/durable-streams.md says why): they answer 404."""

NEXT = "Stream-Next-Offset"
UP_TO_DATE = "Stream-Up-To-Date"
CLOSED = "Stream-Closed"
CURSOR = "Stream-Cursor"
READ_ONLY = {"allow": "GET, HEAD"}


async def get_durable(request: Request) -> DurableLog:
    durable: DurableLog = request.app.state.durable
    return durable


def _name(path: str, request: Request | None = None) -> str:
    """The stream a path names (``request``: the one whose URL holds it); 404 for the
    reserved prefix, and for what is no path (``names.is_ds_path``: empty, too long, a
    control character; in a URL, bytes that are not UTF-8)."""
    if not path or path.split("/", 1)[0] == RESERVED:
        raise ApiError(404, "not_found", f"no stream at /v1/stream/{path[:80]}")
    if not names.is_ds_path(path) or (request is not None and not _utf8_url(request, path)):
        raise ApiError(
            404,
            "not_found",
            f"stream paths are 1 to {keys.DS_PATH_MAX} bytes of UTF-8 without control characters",
        )
    return keys.ds_name(path)


def _utf8_url(request: Request, path: str) -> bool:
    """Whether the URL's percent-decoded path is UTF-8. The server decodes it with
    U+FFFD for each invalid byte, so a path holding one may name another path."""
    if "\ufffd" not in path:
        return True
    try:
        unquote_to_bytes(request.scope.get("raw_path") or b"").decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _bad(exc: BadRequest) -> ApiError:
    return ApiError(400, "bad_request", str(exc))


def _gone(path: str) -> ApiError:
    return ApiError(410, "gone", f"stream {path[:80]} was deleted; streams forked from it live on")


async def _existing(durable: DurableLog, path: str, name: str, state: State | None) -> State:
    """404 for no stream (or a fork still being made), 410 for a soft-deleted one (unless
    its forks are all gone, and so is it)."""
    if state is None or state.pending:
        raise ApiError(404, "not_found", f"no stream at /v1/stream/{path[:80]}")
    if state.deleted:
        if await durable.collect(name):
            raise ApiError(404, "not_found", f"no stream at /v1/stream/{path[:80]}")
        raise _gone(path)
    return state


def _holds(state: State, offset: Offset) -> bool:
    """Whether the stream's history holds ``offset`` (``state`` read at its seq)."""
    if offset.seq > state.tail:
        return False
    return offset.seq == 0 or offset.matches(state.tag_at)


def _check_offset(state: State, offset: Offset) -> None:
    """410 for an offset this stream's history does not hold: beyond its tail, or of
    events Redis lost and that were written again differently (never a spliced read)."""
    if not _holds(state, offset):
        raise ApiError(
            410,
            "offset_gone",
            "the offset is not in this stream's history (beyond its tail, or its events "
            "were lost and written again): read it again from -1",
        )
    if offset.seq == 0 and offset.tag != 0:
        raise ApiError(400, "bad_request", "malformed offset")


def _typed(content_type: str) -> dict[str, str]:
    """The headers of a response in the stream's own type: the type, and for any type a
    browser might render as a page, the sandbox and attachment that stop it
    (``protocol.stored_bytes_headers``). ``nosniff`` is on every response
    (``app.SecurityHeaders``)."""
    return {"content-type": content_type, **protocol.stored_bytes_headers(content_type)}


def _cache_control(request: Request) -> str:
    private = request.app.state.access.reads_guarded
    return f"{'private' if private else 'public'}, max-age=60, stale-while-revalidate=300"


# --- create ---


@router.put(
    PATH,
    status_code=201,
    response_class=Response,
    responses=api_doc.DS_PUT_ANSWERS,
    openapi_extra=api_doc.DS_PUT,
    dependencies=producer("publish"),
)
async def create(path: str, request: Request, settings: SettingsDep) -> Response:
    """Create a stream (201), or confirm one with the same configuration (200)."""
    name = _name(path, request)
    durable = await get_durable(request)
    h = request.headers
    try:
        ttl_raw, exp_raw = h.get("stream-ttl"), h.get("stream-expires-at")
        if ttl_raw is not None and exp_raw is not None:
            raise BadRequest("give Stream-TTL or Stream-Expires-At, not both")
        ttl = protocol.parse_ttl(ttl_raw) if ttl_raw is not None else None
        exp = protocol.parse_expires_at(exp_raw) if exp_raw is not None else None
        closed = protocol.is_true(h.get("stream-closed"))
        source = h.get("stream-forked-from")
        fork_offset = h.get("stream-fork-offset")
        sub_raw = h.get("stream-fork-sub-offset")
        if source is None and (fork_offset is not None or sub_raw is not None):
            raise BadRequest("Stream-Fork-Offset and -Sub-Offset need Stream-Forked-From")
        sub = protocol.parse_sub_offset(sub_raw) if sub_raw is not None else 0
        anchor = None
        if fork_offset is not None:
            parsed = protocol.parse_offset(fork_offset)
            if not isinstance(parsed, Offset):
                raise BadRequest("Stream-Fork-Offset must be an offset this server gave")
            anchor = parsed
    except BadRequest as exc:
        raise _bad(exc) from None
    body = await read_bytes(request, settings.max_body_bytes)
    ct = protocol.normalize_content_type(h.get("content-type"))
    if source is not None:
        return await _fork(
            request,
            durable,
            name,
            path,
            ct=ct,
            ttl=ttl,
            exp=exp,
            closed=closed,
            source=source,
            anchor=anchor,
            anchor_raw=fork_offset or "",
            sub=sub,
            body=body,
        )
    if not protocol.valid_content_type(ct):
        ct = "application/octet-stream"
    entries = _entries(ct, body, create=True)
    written = await durable.create(
        name, ct, ttl=ttl, expires_at=exp, closed=closed, entries=entries
    )
    return _created(request, path, written, ct)


def _created(request: Request, path: str, written: Written, ct: str) -> Response:
    status = written.status
    if status in ("CREATED", "SAME"):
        headers = {**_typed(ct), NEXT: protocol.format_offset(written.tail, written.tail_tag)}
        if written.closed:
            headers[CLOSED] = "true"
        if status == "CREATED":
            headers["location"] = _location(request)
        return Response(status_code=201 if status == "CREATED" else 200, headers=headers)
    reasons = {
        "DIFFERENT": "a stream exists at this path with another configuration",
        "PENDING": "a fork is being made at this path with this configuration; retry",
        "DELETED": "this path's stream was deleted and streams forked from it live on",
        "OTHER": "this path is a stream of events (a generation, a chat or a job feed)",
    }
    raise ApiError(409, "conflict", f"/v1/stream/{path[:80]}: {reasons[status]}")


def _location(request: Request) -> str:
    """The stream's URL, its path as the client sent it (percent-encoded, so any path
    fits in a header)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    base = request.url.replace(path="", query="", fragment="")
    return str(base).rstrip("/") + raw.decode("latin-1").split("?", 1)[0]


def _entries(ct: str, body: bytes, *, create: bool) -> list[tuple[str, bytes]]:
    """The entries a body appends: one per JSON message (flattened one level) for
    ``application/json``, else the bytes as one."""
    if not body:
        return []
    if protocol.mode_of(ct) == "json":
        try:
            messages = protocol.json_messages(body, allow_empty=create)
        except BadRequest as exc:
            raise _bad(exc) from None
        return [(MORE, m) for m in messages[:-1]] + [(DATA, m) for m in messages[-1:]]
    return [(DATA, body)]


async def _fork(
    request: Request,
    durable: DurableLog,
    name: str,
    path: str,
    *,
    ct: str,
    ttl: int | None,
    exp: int | None,
    closed: bool,
    source: str,
    anchor: Offset | None,
    anchor_raw: str,
    sub: int,
    body: bytes,
) -> Response:
    """Copy-on-fork: the source's entries up to the fork point are copied into the fork's
    own slot, pending (404) until complete; the source counts it among its forks."""
    src, state, at_seq, at_tag = await _fork_point(request, durable, source, anchor)
    if ct and ct != state.content_type:
        raise ApiError(409, "conflict", "the fork's Content-Type differs from its source's")
    ct = state.content_type
    if ttl is None and exp is None:
        ttl, exp = state.ttl, state.expires_at
    partial = await _sub_offset(durable, src, at_seq, sub, protocol.mode_of(ct))
    entries = _entries(ct, body, create=True)
    budget = await _fork_budget(request)
    created = await durable.create(
        name, ct, ttl=ttl, expires_at=exp, closed=closed, fork=(src, anchor_raw, sub)
    )
    if created.status == "PENDING":
        raise ApiError(
            409,
            "conflict",
            "a fork with this configuration is being made here; retry",
            headers={"retry-after": "1"},
        )
    if created.status != "CREATED":
        return _created(request, path, created, ct)
    try:
        await _inherit(
            durable, src, name, source=source, at=(at_seq, at_tag), partial=partial, budget=budget
        )
        written = await durable.append(name, ct, entries, close=closed, finalize=True)
        if written.status != "OK":
            raise ApiError(409, "conflict", f"the fork could not be finished ({written.status})")
    except BaseException:
        await durable.discard(name)
        await durable.unfork(src, name)
        raise
    done = Written("CREATED", written.tail, written.tail_tag, written.closed)
    return _created(request, path, done, ct)


async def _fork_budget(request: Request) -> ForkBudget:
    """The budget the fork's copy is charged to (``BROADCASTER_FORK_BYTES_PER_MINUTE``,
    per API key or token subject); 429 at once if it is spent for this minute."""
    settings = await get_settings(request)
    key = await presented_key(request)
    payer = fork_payer(request, key.name if key is not None else None)
    redis = request.app.state.redis
    await fork_room(redis, payer, settings.fork_bytes_per_minute)
    return ForkBudget(redis, payer, settings.fork_bytes_per_minute)


async def _fork_point(
    request: Request, durable: DurableLog, source: str, anchor: Offset | None
) -> tuple[str, State, int, str]:
    """The source of a fork (its name and state) and the seq and tag it forks at: 404 for
    no source, 409 for a deleted one, 400 for an offset it does not hold."""
    src_path = source.split("://", 1)[-1]
    if "://" in source:
        src_path = "/" + src_path.split("/", 1)[-1]
    if not src_path.startswith("/v1/stream/"):
        raise ApiError(400, "bad_request", "Stream-Forked-From must be a /v1/stream/ path")
    src_path = src_path.removeprefix("/v1/stream/")
    src = _name(src_path)
    await check_viewer(request, src_path)
    state, _ = await durable.read(src, anchor.seq if anchor else 0)
    if state is None or state.pending:
        raise ApiError(404, "not_found", f"no stream at {source[:80]} to fork")
    if state.deleted:
        raise ApiError(409, "conflict", f"{source[:80]} was deleted: it cannot be forked")
    if anchor is None:
        return src, state, state.tail, state.tail_tag
    if anchor.seq > state.tail:
        raise ApiError(400, "bad_request", "Stream-Fork-Offset is beyond the source's tail")
    if not _holds(state, anchor) or (anchor.seq == 0 and anchor.tag):
        raise ApiError(400, "bad_request", "Stream-Fork-Offset is not an offset of the source")
    return src, state, anchor.seq, state.tag_at


async def _inherit(
    durable: DurableLog,
    src: str,
    name: str,
    *,
    source: str,
    at: tuple[int, str],
    partial: list[Entry],
    budget: ForkBudget,
) -> None:
    """Count the fork among its source's, then copy what it inherits, a page at a time,
    each charged to ``budget`` before it is copied."""
    registered = await durable.fork_register(src, name, *at)
    if registered.status != "OK":
        raise {
            "NOSTREAM": ApiError(404, "not_found", f"no stream at {source[:80]} to fork"),
            "DELETED": ApiError(409, "conflict", f"{source[:80]} was deleted"),
        }.get(
            registered.status,
            ApiError(400, "bad_request", "Stream-Fork-Offset is not an offset of the source"),
        )
    after = 0
    while after < at[0]:
        page = await durable.entries(src, after, min(at[0], after + live.PAGE_ENTRIES))
        if not page:
            raise ApiError(409, "conflict", f"{source[:80]} changed while it was forked")
        await budget.charge(sum(len(e.data) for e in page))
        if not await durable.copy(name, page):
            raise ApiError(409, "conflict", "the fork was removed while it was made")
        after = page[-1].seq
    await budget.charge(sum(len(e.data) for e in partial))
    if partial and not await durable.copy(name, partial):
        raise ApiError(409, "conflict", "the fork was removed while it was made")


async def _sub_offset(durable: DurableLog, src: str, at: int, sub: int, mode: Mode) -> list[Entry]:
    """The part of the append after the fork point that a sub-offset takes: ``sub`` JSON
    messages, or ``sub`` bytes; 400 if that append has fewer."""
    if sub == 0:
        return []
    append: list[Entry] = []
    for entry in await durable.entries(src, at, at + (sub if mode == "json" else 1)):
        if not entry.is_data:
            break
        append.append(entry)
        if entry.ends_append:
            break
    if mode == "json":
        if sub > len(append):
            raise ApiError(400, "bad_request", "Stream-Fork-Sub-Offset is past the next append")
        taken = append[:sub]
        return [*taken[:-1], Entry(taken[-1].seq, DATA, taken[-1].data, "")]
    if not append or sub > len(append[0].data):
        raise ApiError(400, "bad_request", "Stream-Fork-Sub-Offset is past the next append")
    return [Entry(append[0].seq, DATA, append[0].data[:sub], "")]


# --- append, close, delete ---


@router.post(
    PATH,
    status_code=204,
    response_class=Response,
    responses=api_doc.DS_POST_ANSWERS,
    openapi_extra=api_doc.DS_POST,
    dependencies=producer("publish"),
)
async def append(path: str, request: Request, settings: SettingsDep) -> Response:
    """Append (204; 200 for an idempotent producer's new data), close, or both."""
    name = _name(path, request)
    durable = await get_durable(request)
    h = request.headers
    try:
        close = protocol.is_true(h.get("stream-closed"))
        producer_ = protocol.parse_producer(
            h.get("producer-id"), h.get("producer-epoch"), h.get("producer-seq")
        )
    except BadRequest as exc:
        raise _bad(exc) from None
    body = await read_bytes(request, settings.max_body_bytes)
    ct = protocol.normalize_content_type(h.get("content-type"))
    if not body and not close:
        raise ApiError(
            400, "bad_request", "an empty body appends nothing (to close, send Stream-Closed: true)"
        )
    if body and not ct:
        raise ApiError(400, "bad_request", "a body needs its Content-Type")
    entries = _entries(ct, body, create=False)
    p = (producer_.id, producer_.epoch, producer_.seq) if producer_ else None
    w = await durable.append(
        name, ct, entries, stream_seq=h.get("stream-seq"), producer=p, close=close
    )
    headers = {NEXT: protocol.format_offset(w.tail, w.tail_tag)}
    if w.closed:
        headers[CLOSED] = "true"
    if w.status == "OK":
        if producer_ is not None:
            headers |= {"producer-epoch": str(producer_.epoch), "producer-seq": str(producer_.seq)}
            return Response(status_code=200 if entries else 204, headers=headers)
        return Response(status_code=204, headers=headers)
    if w.status == "CLOSED_OK":
        return Response(status_code=204, headers=headers)
    if w.status == "DUP":
        return Response(
            status_code=204, headers=headers | {"producer-epoch": w.a, "producer-seq": w.b}
        )
    raise _refused(path, w.status, w.a, w.b, headers)


def _refused(path: str, status: str, a: str, b: str, headers: dict[str, str]) -> ApiError:
    where = f"/v1/stream/{path[:80]}"
    match status:
        case "CLOSED":
            return ApiError(409, "closed", f"{where} is closed", headers=headers)
        case "CT":
            return ApiError(409, "content_type", f"{where} has another Content-Type")
        case "SEQ":
            return ApiError(409, "stream_seq", "Stream-Seq is not above the stream's last")
        case "GAP":
            return ApiError(
                409,
                "producer_seq_gap",
                f"Producer-Seq {b} skips ahead of {a}",
                headers={"producer-expected-seq": a, "producer-received-seq": b},
            )
        case "STALE_EPOCH":
            return ApiError(
                403,
                "stale_epoch",
                "a newer epoch of this producer writes now",
                headers={"producer-epoch": a},
            )
        case "EPOCH_SEQ":
            return ApiError(400, "bad_request", "a new Producer-Epoch starts at Producer-Seq 0")
        case "LIMIT":
            return ApiError(413, "stream_full", f"{where} is full")
        case "READONLY":
            return ApiError(
                405,
                "read_only",
                f"{where} is a stream of events: read it here, write it through its own API",
                headers=READ_ONLY,
            )
        case "GONE":
            return _gone(path)
        case _:
            return ApiError(404, "not_found", f"no stream at {where}")


@router.delete(
    PATH,
    status_code=204,
    response_class=Response,
    responses=api_doc.DS_DELETE_ANSWERS,
    dependencies=producer("publish"),
)
async def delete(path: str, request: Request) -> Response:
    name = _name(path, request)
    status = await (await get_durable(request)).delete(name)
    if status in ("DELETED", "SOFT"):
        return Response(status_code=204)
    raise _refused(path, status, "", "", {})


# --- read ---


@router.head(PATH, response_class=Response, responses=api_doc.DS_HEAD_ANSWERS)
async def head(path: str, request: Request) -> Response:
    """Where the stream is, without reading it (nor renewing its TTL)."""
    name = _name(path, request)
    await check_viewer(request, path)
    durable = await get_durable(request)
    state, _ = await durable.read(name, 0)
    state = await _existing(durable, path, name, state)
    next_offset = protocol.format_offset(state.tail, state.tail_tag)
    headers = {
        **_typed(state.content_type),
        NEXT: next_offset,
        "cache-control": "no-store",
        "etag": protocol.etag(name, "-1", next_offset, state.closed),
    }
    if state.closed:
        headers[CLOSED] = "true"
    if state.ttl is not None:
        headers["stream-ttl"] = str(state.ttl)
    if state.expires_at is not None:
        headers["stream-expires-at"] = protocol.format_expires_at(state.expires_at)
    if not state.writable:
        headers |= READ_ONLY
    return Response(status_code=200, headers=headers)


@router.get(
    PATH, response_class=Response, responses=api_doc.DS_GET_ANSWERS, openapi_extra=api_doc.DS_GET
)
async def read(path: str, request: Request) -> Response:
    """Catch-up (a page of what follows ``offset``), ``live=long-poll`` or ``live=sse``."""
    name = _name(path, request)
    await check_viewer(request, path)
    q = request.query_params
    offsets = q.getlist("offset")
    mode_raw = q.get("live")
    try:
        if len(offsets) > 1:
            raise BadRequest("one offset, please")
        if offsets and offsets[0] == "":
            raise BadRequest("an empty offset")
        offset = protocol.parse_offset(offsets[0]) if offsets else "-1"
        if mode_raw not in (None, "long-poll", "sse"):
            raise BadRequest("live is long-poll or sse")
        if mode_raw is not None and not offsets:
            raise BadRequest(f"live={mode_raw} needs an offset")
    except BadRequest as exc:
        raise _bad(exc) from None
    durable = await get_durable(request)
    target = Target(request, durable, name, path)
    if mode_raw == "sse":
        return await _sse(target, offset, q.get("cursor"))
    if mode_raw == "long-poll":
        return await _long_poll(target, offset, q.get("cursor"))
    return await _catch_up(target, offset, offsets[0] if offsets else "-1")


class Target(NamedTuple):
    """What a read is about."""

    request: Request
    durable: DurableLog
    name: str
    path: str


def _after(offset: Offset | str, state: State) -> tuple[int, str]:
    """The seq and tag a read starts after."""
    if offset == "now":
        return state.tail, state.tail_tag
    if isinstance(offset, Offset):
        _check_offset(state, offset)
        return offset.seq, state.tag_at
    return 0, ""


def _data_response(
    state: State, entries: list[Entry], after: tuple[int, str], *, up_to_date: bool
) -> tuple[bytes, dict[str, str], str]:
    data = [e for e in entries if e.is_data]
    seq, tag = (data[-1].seq, data[-1].tag) if data else after
    next_offset = protocol.format_offset(seq, tag)
    mode = protocol.mode_of(state.content_type)
    headers = {**_typed(state.content_type), NEXT: next_offset}
    if up_to_date:
        headers[UP_TO_DATE] = "true"
        if state.closed or (entries and not entries[-1].is_data):
            headers[CLOSED] = "true"
    return protocol.body_of(mode, [e.data for e in data]), headers, next_offset


async def _catch_up(target: Target, offset: Any, raw: str) -> Response:
    request, durable, name, path = target
    count = 0 if offset == "now" else live.PAGE_ENTRIES
    after_seq = offset.seq if isinstance(offset, Offset) else 0
    state, entries = await durable.read(name, after_seq, count, live.PAGE_BYTES, touch=True)
    state = await _existing(durable, path, name, state)
    after = _after(offset, state)
    if offset == "now":
        mode = protocol.mode_of(state.content_type)
        headers = {
            **_typed(state.content_type),
            NEXT: protocol.format_offset(*after),
            UP_TO_DATE: "true",
            "cache-control": "no-store",
        }
        if state.closed:
            headers[CLOSED] = "true"
        return Response(protocol.body_of(mode, []), headers=headers)
    up_to_date = not entries or entries[-1].seq >= state.seq
    body, headers, next_offset = _data_response(state, entries, after, up_to_date=up_to_date)
    tag = protocol.etag(name, raw, next_offset, CLOSED in headers)
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=304, headers={"etag": tag})
    headers |= {"etag": tag, "cache-control": _cache_control(request)}
    return Response(body, headers=headers)


async def _long_poll(target: Target, offset: Any, cursor: str | None) -> Response:
    request, durable, name, path = target
    settings = await get_settings(request)
    hub = await get_hub(request)
    after = None if offset == "now" else (offset.seq if isinstance(offset, Offset) else 0)

    def known(state: State) -> bool:
        return not isinstance(offset, Offset) or _holds(state, offset)

    slot = await admit_long_poll(request)
    try:
        polled = await live.long_poll(
            hub,
            durable,
            name=name,
            after=after,
            wait_seconds=settings.ds_long_poll_seconds,
            known=known,
        )
    finally:
        slot.release()
    state = await _existing(durable, path, name, polled.state)
    if isinstance(offset, Offset) and not polled.entries:
        _check_offset(state, offset)
    headers_cursor = {CURSOR: protocol.response_cursor(cursor)}
    data = [e for e in polled.entries if e.is_data]
    if data:
        body, headers, next_offset = _data_response(
            state, polled.entries, (polled.at.seq, polled.at.tag), up_to_date=True
        )
        raw = protocol.format_offset(*((after or 0), ""))
        headers |= headers_cursor | {
            "etag": protocol.etag(name, raw, next_offset, CLOSED in headers),
            "cache-control": _cache_control(request),
        }
        return Response(body, headers=headers)
    headers = {NEXT: polled.at.offset, UP_TO_DATE: "true", "cache-control": "no-store"}
    if polled.closed or state.closed:
        headers[CLOSED] = "true"
    else:
        headers |= headers_cursor
    return Response(status_code=204, headers=headers)


async def _sse(target: Target, offset: Any, cursor: str | None) -> Response:
    request, durable, name, path = target
    after_seq = offset.seq if isinstance(offset, Offset) else 0
    state, _ = await durable.read(name, after_seq, touch=True)
    state = await _existing(durable, path, name, state)
    seq, tag = _after(offset, state)
    hub, settings = await get_hub(request), await get_settings(request)
    mode = protocol.mode_of(state.content_type)
    floor = int(protocol.response_cursor(cursor)) if cursor is not None else 0
    headers = {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
    }
    if mode == "binary":
        headers["stream-sse-data-encoding"] = "base64"
    metrics = request.app.state.metrics
    slot = await admit_viewer(request, [name])
    return SSEResponse(
        lambda writer: live.sse(
            hub,
            durable,
            state=state,
            reader_at=live.Position(seq, tag),
            mode=mode,
            floor=floor,
            name=name,
            writer=writer,
        ),
        first=b"",
        headers=headers,
        send_timeout=settings.slow_viewer_timeout,
        stream_id=name,
        on_cut_off=metrics.cut_off.inc,
        on_end=slot.release,
    )
