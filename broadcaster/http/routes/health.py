"""What operators and their tools ask a front-end: ``/healthz``, ``/readyz``, ``/metrics``
(with ``BROADCASTER_METRICS_KEY``, only for a request that presents it);
and the demo page at ``/`` with its chat tab's script (built from web/chat by
``make chat-bundle``, served from the package: no node at run time)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from functools import cache
from pathlib import Path

from fastapi import Depends
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from broadcaster.core import connection
from broadcaster.http import openapi
from broadcaster.http.access import metrics_key
from broadcaster.http.errors import error_response
from broadcaster.http.resources import HubDep, JobsDep, MetricsDep, RedisDep
from broadcaster.http.stream_ids import api_router
from broadcaster.viewers.proxies import UNTRUSTED

router = api_router()


STATIC = Path(__file__).parent.parent / "static"


@cache
def _static(name: str) -> bytes:
    return (STATIC / name).read_bytes()


@router.get("/", include_in_schema=False)
async def demo_page() -> HTMLResponse:
    return HTMLResponse(_static("demo.html"))


@router.get("/static/chat.js", include_in_schema=False)
async def chat_script() -> Response:
    return Response(_static("chat.js"), media_type="text/javascript; charset=utf-8")


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    return Response(status_code=204)


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(metrics_key)])
async def prometheus(hub: HubDep, jobs: JobsDep, metrics: MetricsDep) -> Response:
    metrics.connections.set(hub.connections)
    metrics.streams.set(hub.streams)
    metrics.tasks.set(len(asyncio.all_tasks()))
    metrics.gc_frozen.set(gc.get_freeze_count())
    # On a Redis error keep the last value; /readyz reports Redis trouble.
    with contextlib.suppress(*connection.REDIS_ERRORS):
        metrics.generations_queued.set(await jobs.depth())
        await metrics.read_queues(jobs)  # the oldest job's age, the live workers
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses=openapi.ok(200, openapi.Ready, "Redis answers") | openapi.errors(503),
)
async def readyz(hub: HubDep, redis: RedisDep, jobs: JobsDep) -> JSONResponse:
    """200 while Redis answers (503 while draining or without Redis), with the open
    viewers and streams of this process and, per provider the deployment has served,
    whether a live worker serves it now (a request for it is queued either way); and,
    when lately a peer that is no trusted proxy forwarded requests, how many."""
    if hub.closing:
        return error_response(503, "draining", "shutting down")
    try:
        await redis.ping()
    except connection.REDIS_ERRORS:
        return error_response(503, "unavailable", "Redis does not answer")
    try:
        providers = await jobs.provider_status()
    except connection.REDIS_ERRORS:
        return error_response(503, "unavailable", "Redis does not answer")
    return JSONResponse(
        {
            "status": "ready",
            "connections": hub.connections,
            "viewers": hub.viewers,
            "streams": hub.streams,
            "providers": providers,
            # A proxy it does not trust: said, not unready (it serves; only the
            # per-address limit counts that proxy's clients as one).
            "forwarded_untrusted": UNTRUSTED.report(),
        }
    )
