"""``/v1/worker``: the job protocol for workers that are not Python (docs/worker-protocol.md).

Claim a job of a provider (a long-poll), append its events under the lease token, renew
the lease, hand it back. Each answer carries the signals (stop, steering). Only an API
key with the ``work`` right opens these routes (``access.worker_key``); the logic is
``generations/leases.py``.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response

from broadcaster.generations import leases as lease_errors
from broadcaster.generations import waiting
from broadcaster.generations.leases import Leased, Wait, parse_token
from broadcaster.http import openapi, openapi_requests
from broadcaster.http import openapi_worker as spec
from broadcaster.http.access import check_work_scope, worker_key
from broadcaster.http.bodies import read_json, validated
from broadcaster.http.errors import ApiError
from broadcaster.http.feeds import refused_events
from broadcaster.http.resources import HubDep, LeasesDep, SettingsDep
from broadcaster.http.stream_ids import api_router, valid_stream_id
from broadcaster.http.worker_bodies import MAX_EVENTS, AppendBody, ClaimBody, LeaseBody

router = api_router()

_JOB = [Depends(valid_stream_id), Depends(worker_key)]


@router.post(
    "/v1/worker/claim",
    openapi_extra=openapi_requests.body(ClaimBody),
    responses=openapi.ok(200, spec.ClaimedJob, "a job, leased to this worker")
    | spec.NO_JOB
    | openapi.errors(401, 403, 413, 422, 503),
    dependencies=[Depends(worker_key)],
)
async def claim(
    request: Request, leases: LeasesDep, settings: SettingsDep, hub: HubDep
) -> Response:
    """Wait (up to ``wait_seconds``, at most the deployment's cap) for a job of
    ``provider`` and lease it: 204 if none came, or once the client left or this
    front-end drains (a claim never holds a shutdown up)."""
    body = validated(ClaimBody, await read_json(request, settings.max_body_bytes))
    check_work_scope(request, body.provider)
    cap = settings.worker_claim_wait_seconds
    wait = cap if body.wait_seconds is None else min(body.wait_seconds, cap)

    async def gone() -> bool:
        return hub.closing or await request.is_disconnected()

    try:
        leased = await leases.claim(body.provider, wait, gone)
    except lease_errors.Busy:
        raise ApiError(
            503, "busy", "too many claims wait on this front-end", headers={"retry-after": "1"}
        ) from None
    if leased is None:
        return Response(status_code=204)
    return JSONResponse(_job(leased, leases.lease_ms / 1000))


def _leased_in_scope(request: Request, lease: str) -> None:
    """403 for a lease of a provider the work key is not scoped to (a lease names its
    provider): a scoped key writes no other job."""
    found = parse_token(lease)
    if found is not None:
        check_work_scope(request, found.provider)


def _job(leased: Leased, lease_seconds: float) -> dict[str, Any]:
    chat = leased.request.get("chat_id")
    return {
        "generation_id": leased.generation_id,
        "lease": leased.token,
        "lease_seconds": lease_seconds,
        "provider": leased.provider,
        "attempt": leased.claim.attempt,
        "last_event_id": leased.claim.last_seq,
        "request": leased.request,
        "chat_id": chat if isinstance(chat, str) else None,
        "message_id": leased.message_id,
        "events": leased.events,
        "events_complete": leased.events_complete,
        "signals": leased.signals.body(),
    }


_JOB_ERRORS = openapi.errors(401, 403, 404, 409, 413, 422)


@router.post(
    "/v1/worker/jobs/{stream_id}/events",
    openapi_extra=openapi_requests.body(AppendBody),
    responses=openapi.ok(200, spec.Appended, "appended") | _JOB_ERRORS,
    dependencies=_JOB,
)
async def append(
    stream_id: str, request: Request, leases: LeasesDep, settings: SettingsDep
) -> JSONResponse:
    """Append events (AI SDK UI message chunks) to the leased generation, atomically, if
    the lease still owns it and the stream is at ``after``."""
    raw = await read_json(request, settings.max_body_bytes)
    events = raw.get("events") if isinstance(raw, dict) else None
    if isinstance(events, list) and len(events) > MAX_EVENTS:
        raise ApiError(413, "too_many_events", f"at most {MAX_EVENTS} events a request")
    body = validated(AppendBody, raw)
    _leased_in_scope(request, body.lease)
    try:
        with refused_events():
            seq, again, signals = await leases.append(
                stream_id, body.lease, body.after, _events(body), _wait(body), usage=_usage(body)
            )
    except lease_errors.SeqMismatch as exc:
        raise ApiError(409, "seq_mismatch", str(exc), last_event_id=exc.last_seq) from None
    except lease_errors.Ended as exc:
        raise ApiError(409, "ended", str(exc), ended=exc.how, last_event_id=exc.last_seq) from None
    except (lease_errors.Fenced, lease_errors.NoSuchJob) as exc:
        raise _refusal(exc) from None
    return JSONResponse({"last_event_id": seq, "duplicate": again, "signals": signals.body()})


def _events(body: AppendBody) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], body.events)


def _wait(body: AppendBody) -> Wait | None:
    """The append's ``wait``, checked beyond its shape: no terminal chunk beside it, each
    call asked about once."""
    if body.wait is None:
        return None
    if body.events[-1].get("type") in ("finish", "error", "abort"):
        raise ApiError(422, "invalid_request", "a batch that waits for a person cannot end it")
    calls = [a.toolCallId for a in body.wait.approvals]
    if len(set(calls)) != len(calls):
        raise ApiError(422, "invalid_request", "wait.approvals names a toolCallId twice")
    asks = [waiting.Ask(a.toolCallId, a.toolName, a.input) for a in body.wait.approvals]
    return Wait(asks, body.wait.timeout_seconds)


def _usage(body: AppendBody) -> dict[str, Any] | None:
    """The append's ``usage``: only beside a terminal chunk."""
    if body.usage is not None and body.events[-1].get("type") not in ("finish", "error", "abort"):
        raise ApiError(422, "invalid_request", "usage is reported with a terminal chunk only")
    return body.usage


def _refusal(exc: Exception) -> ApiError:
    if isinstance(exc, lease_errors.NoSuchJob):
        return ApiError(404, "not_found", "no such generation")
    return ApiError(
        409,
        "fenced",
        "this lease does not own the generation (it lapsed and another worker took the "
        "job over, or it was handed back): stop writing",
    )


@router.post(
    "/v1/worker/jobs/{stream_id}/lease",
    openapi_extra=openapi_requests.body(LeaseBody),
    responses=openapi.ok(200, spec.Renewed, "renewed, with the signals") | _JOB_ERRORS,
    dependencies=_JOB,
)
async def renew(
    stream_id: str, request: Request, leases: LeasesDep, settings: SettingsDep
) -> JSONResponse:
    """Renew the lease (every third of ``lease_seconds``) and read the signals; a stopped
    generation answers ``stop`` and its lease is over."""
    body = validated(LeaseBody, await read_json(request, settings.max_body_bytes))
    _leased_in_scope(request, body.lease)
    try:
        signals = await leases.renew(stream_id, body.lease)
    except (lease_errors.Fenced, lease_errors.NoSuchJob) as exc:
        raise _refusal(exc) from None
    return JSONResponse({"lease_seconds": leases.lease_ms / 1000, "signals": signals.body()})


@router.post(
    "/v1/worker/jobs/{stream_id}/release",
    openapi_extra=openapi_requests.body(LeaseBody),
    responses=openapi.ok(200, spec.Released, "handed back: another worker takes it over")
    | _JOB_ERRORS,
    dependencies=_JOB,
)
async def release(
    stream_id: str, request: Request, leases: LeasesDep, settings: SettingsDep
) -> JSONResponse:
    """Hand the job back (a worker stopping): it is queued again at once, and whoever
    claims it next gets the events so far."""
    body = validated(LeaseBody, await read_json(request, settings.max_body_bytes))
    _leased_in_scope(request, body.lease)
    try:
        await leases.release(stream_id, body.lease)
    except lease_errors.Ended as exc:
        raise ApiError(409, "ended", str(exc), ended=exc.how) from None
    except (lease_errors.Fenced, lease_errors.NoSuchJob) as exc:
        raise _refusal(exc) from None
    return JSONResponse({"generation_id": stream_id, "status": "queued"})
