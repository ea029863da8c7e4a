"""``/v1/stream/{path}``: the Durable Streams protocol (ElectricSQL's open HTTP protocol for
append-only streams with offsets), on the same Redis log and fan-out as every other
stream (docs/durable-streams.md).

``PUT`` creates or forks, ``POST`` appends and closes, ``DELETE`` deletes, ``HEAD``
tells where a stream is, ``GET`` reads (catch-up, long-poll, SSE). This project's own
streams read as JSON Durable Streams, and writes to them are 405. Access is the
``publish`` and ``read`` rights as everywhere; stored bytes never run as a page of the
API's origin (``protocol.typed_headers``).
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import Response

from broadcaster.core import keys, names
from broadcaster.durable import fork, protocol, reads
from broadcaster.durable.protocol import BadRequest
from broadcaster.durable.storage import Written
from broadcaster.http import durable_reads
from broadcaster.http import openapi_durable as api_doc
from broadcaster.http.access import check_viewer, producer
from broadcaster.http.bodies import read_bytes
from broadcaster.http.errors import ApiError
from broadcaster.http.forks import fork_budget, not_forked
from broadcaster.http.resources import SettingsDep, get_durable
from broadcaster.http.stream_ids import api_router, producible, utf8_url_path

router = api_router()

PATH = "/v1/stream/{path:path}"
READ_ONLY = {"allow": "GET, HEAD"}


def _name(path: str, request: Request | None = None) -> str:
    """The stream a path names (``request``: the one whose URL holds it); 404 for the
    reserved prefix, and for what is no path (``names.is_ds_path``: empty, too long, a
    control character; in a URL, bytes that are not UTF-8)."""
    if not path or protocol.is_reserved(path):
        raise ApiError(404, "not_found", f"no stream at /v1/stream/{path[:80]}")
    if not names.is_ds_path(path) or (request is not None and not utf8_url_path(request, path)):
        raise ApiError(
            404,
            "not_found",
            f"stream paths are 1 to {keys.DS_PATH_MAX} bytes of UTF-8 without control characters",
        )
    return keys.ds_name(path)


def _bad(exc: BadRequest) -> ApiError:
    return ApiError(400, "bad_request", str(exc))


def _gone(path: str) -> ApiError:
    return ApiError(410, "gone", f"stream {path[:80]} was deleted; streams forked from it live on")


def _unreadable(path: str, exc: reads.Unreadable) -> ApiError:
    """The answer to a read of no stream (404), of a deleted one (410), or from an offset
    its history does not hold (410; 400 for a malformed one)."""
    match exc:
        case reads.Deleted():
            return _gone(path)
        case reads.OffsetGone():
            return ApiError(410, "offset_gone", str(exc))
        case reads.BadOffset():
            return ApiError(400, "bad_request", str(exc))
        case _:
            return ApiError(404, "not_found", f"no stream at /v1/stream/{path[:80]}")


# --- create ---


@router.put(
    PATH,
    status_code=201,
    response_class=Response,
    responses=api_doc.DS_PUT_ANSWERS,
    openapi_extra=api_doc.DS_PUT,
    dependencies=[*producer("publish"), Depends(producible)],
)
async def create(path: str, request: Request, settings: SettingsDep) -> Response:
    """Create a stream (201), or confirm one with the same configuration (200)."""
    name = _name(path, request)
    durable = await get_durable(request)
    try:
        asked = protocol.parse_creation(request.headers)
    except BadRequest as exc:
        raise _bad(exc) from None
    body = await read_bytes(request, settings.max_body_bytes)
    ct = protocol.normalize_content_type(request.headers.get("content-type"))
    if asked.forked_from is not None:
        return await _fork(request, name, path, asked, ct, body)
    if not protocol.valid_content_type(ct):
        ct = "application/octet-stream"
    entries = _entries(ct, body, create=True)
    written = await durable.create(
        name, ct, ttl=asked.ttl, expires_at=asked.expires_at, closed=asked.closed, entries=entries
    )
    return _created(request, path, written, ct)


def _created(request: Request, path: str, written: Written, ct: str) -> Response:
    status = written.status
    if status in ("CREATED", "SAME"):
        next_offset = protocol.format_offset(written.tail, written.tail_tag)
        headers = protocol.offset_headers(next_offset, ct, closed=written.closed)
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
    try:
        return protocol.body_entries(ct, body, create=create)
    except BadRequest as exc:
        raise _bad(exc) from None


async def _fork(  # noqa: PLR0917
    request: Request, name: str, path: str, asked: protocol.Creation, ct: str, body: bytes
) -> Response:
    """A fork (``durable.fork``) of a source the client may read, its copy charged to the
    client's fork budget."""
    durable = await get_durable(request)
    try:
        src_path = fork.source_path(asked.forked_from or "")
        src = _name(src_path)
        await check_viewer(request, src_path)
        plan = await fork.plan(durable, src, asked, ct)
        entries = _entries(plan.content_type, body, create=True)
        budget = await fork_budget(request)
        written = await fork.make(
            durable, name, plan, closed=asked.closed, entries=entries, charge=budget.charge
        )
    except fork.Refused as exc:
        raise not_forked(exc) from None
    return _created(request, path, written, plan.content_type)


# --- append, close, delete ---


@router.post(
    PATH,
    status_code=204,
    response_class=Response,
    responses=api_doc.DS_POST_ANSWERS,
    openapi_extra=api_doc.DS_POST,
    dependencies=[*producer("publish"), Depends(producible)],
)
async def append(path: str, request: Request, settings: SettingsDep) -> Response:
    """Append (204; 200 for an idempotent producer's new data), close, or both."""
    name = _name(path, request)
    durable = await get_durable(request)
    h = request.headers
    try:
        close, producer_ = protocol.parse_append(h)
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
    headers = protocol.offset_headers(protocol.format_offset(w.tail, w.tail_tag), closed=w.closed)
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
    try:
        state = await reads.where(await get_durable(request), name)
    except reads.Unreadable as exc:
        raise _unreadable(path, exc) from None
    headers = reads.described(name, state)
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
        offset = protocol.parse_read(offsets, mode_raw)
    except BadRequest as exc:
        raise _bad(exc) from None
    durable = await get_durable(request)
    try:
        if mode_raw == "sse":
            return await durable_reads.sse(request, durable, name, offset, q.get("cursor"))
        if mode_raw == "long-poll":
            return await durable_reads.long_poll(request, durable, name, offset, q.get("cursor"))
        raw = offsets[0] if offsets else "-1"
        return await durable_reads.catch_up(request, durable, name, offset, raw)
    except reads.Unreadable as exc:
        raise _unreadable(path, exc) from None
