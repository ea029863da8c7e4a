"""What a front-end holds while it serves, and how the routes reach it.

``create_app`` puts the settings, the access policy and the metrics in ``app.state``; the
lifespan adds the Redis client, the event log, the hub and the job queue, and closes them
at shutdown. Routes ask for them with the dependencies below, which only read
``request.app.state``: nothing here is a module-level client.

The getters are ``async`` on purpose: FastAPI runs a plain ``def`` dependency in a
thread pool, a thread hop per request for an attribute read.
"""

from __future__ import annotations

import asyncio
import copy
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from redis.asyncio import Redis

from broadcaster.auth.revocations import Revocations
from broadcaster.chat.approvals import Approvals
from broadcaster.chat.followers import ChatFollowers
from broadcaster.chat.owners import Owners
from broadcaster.chat.pump import ChatPump
from broadcaster.chat.records import Chats
from broadcaster.chat.settle import TurnSettler
from broadcaster.core import connection, contain, keys
from broadcaster.core.coalesce import Coalesce
from broadcaster.core.durability import Durability, DurabilityUnsupported
from broadcaster.core.eventlog import EventLog
from broadcaster.core.settings import bad_settings
from broadcaster.dashboard.cursor import Bases
from broadcaster.durable.storage import DurableLog
from broadcaster.fanout import push
from broadcaster.fanout.config import HubConfig
from broadcaster.fanout.hub import Hub
from broadcaster.fanout.wakes import Wakes
from broadcaster.generations.idempotency import Idempotency
from broadcaster.generations.jobs import JobQueue
from broadcaster.generations.leases import Leases
from broadcaster.generations.ledger import Ledger
from broadcaster.generations.lifecycle import Generations
from broadcaster.generations.overdue import OverdueJobs
from broadcaster.generations.settling import Settler
from broadcaster.http.metrics import FrontendMetrics, GcPauses
from broadcaster.http.offloop import Offloop
from broadcaster.http.settings import Settings
from broadcaster.http.stream_ids import new_stream_id
from broadcaster.presence.counts import PresenceStore
from broadcaster.presence.tracker import Presence
from broadcaster.webhooks.deliverer import delivering


@asynccontextmanager
async def lifespan(app: FastAPI, redis_url: str) -> AsyncIterator[None]:
    """Connect to ``redis_url`` and run the hub while the app serves (``create_app``
    binds ``redis_url``)."""
    settings: Settings = app.state.settings
    redis = connection.command_client(redis_url, settings.redis_pool_size)
    resolver = push.resolver_for(redis_url, redis)
    durability = await _durability(app, redis, settings)
    event_log = _event_log(redis, settings, durability)
    event_log.shared = Coalesce()
    presence_store = PresenceStore(redis, settings.presence_heartbeat_seconds)
    # How long a thread keeps the interpreter's lock while the loop waits for it: the
    # process's, so set while it serves, and given back after.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(settings.switch_interval_ms / 1000)
    try:
        async with (
            GcPauses(app.state.metrics),
            Presence(presence_store, on_change=app.state.metrics.presence_changed) as presence,
            Hub(resolver, event_log, _hub_config(settings), app.state.metrics, presence) as hub,
            delivering(
                settings, redis, redis_url, app.state.metrics.registry, durability=durability
            ),
        ):
            app.state.redis = redis
            app.state.presence = presence
            app.state.offloop = _offloop(settings)
            _logs(app, settings, event_log, durability)
            app.state.hub = hub
            revocations = app.state.revocations = await _revocations(app, redis, durability)
            app.state.viewing.started(hub, event_log, revocations.revokes)
            app.state.jobs = JobQueue(redis)
            app.state.ledger = Ledger(redis, settings.usage_retention_days)
            _chats(app, settings, event_log, durability)
            app.state.idempotency = Idempotency(
                redis,
                settings.idempotency_ttl_seconds,
                round(settings.idempotency_pending_seconds * 1000),
                durability,
            )
            sweeping = _sweepers(app, settings, event_log, resolver)
            try:
                yield
            finally:
                await contain.cancel_until_ended(sweeping, raising=False)
                await revocations.aclose()
                app.state.viewing.expiries.close()
                await app.state.offloop.aclose()
                await app.state.durable.aclose()
                await event_log.shared.aclose()
    finally:
        sys.setswitchinterval(interval)
        await durability.aclose()
        await redis.aclose()


def _logs(app: FastAPI, settings: Settings, event_log: EventLog, durability: Durability) -> None:
    """The logs the routes read and write through: streams of events, their generations
    and leases, dashboard bases, Durable Streams."""
    redis = event_log.redis
    app.state.bases = Bases(redis, settings.ended_ttl_seconds)
    app.state.log = event_log
    app.state.durable = DurableLog(
        redis,
        idle_ttl=settings.idle_ttl_seconds,
        max_entries=settings.max_stream_events,
        max_bytes=settings.max_stream_bytes,
        durability=durability,
    )
    # A request that came in a large body is encoded in the pool.
    app.state.generations = Generations(
        event_log, settings.worker_lease_seconds, encode=app.state.offloop.request_json
    )
    app.state.leases = Leases(app.state.generations)


def _offloop(settings: Settings) -> Offloop:
    """The threads for request work."""
    return Offloop(settings.body_threads, settings.body_waiting)


def _chats(app: FastAPI, settings: Settings, event_log: EventLog, durability: Durability) -> None:
    """The chats' records and their owners' lists and feeds, told of each turn; a
    history read whole is decoded off the event loop when it is large."""
    chat_ttl = keys.chat_ttl(settings.idle_ttl_seconds, settings.ended_ttl_seconds)
    retention = settings.chat_retention_seconds
    redis = event_log.redis
    pool: Offloop = app.state.offloop
    chats = Chats(
        redis,
        chat_ttl,
        durability,
        retention=retention,
        decode=pool.decoded,
        kept=pool.kept,
    )
    app.state.chats = chats
    app.state.owners = Owners(redis, event_log, durability)
    chats.on_turn = app.state.owners.turn_started
    # Work already admitted (the pump's rounds, one at a time; a run's history once its
    # answer started) is never refused for a full pool: it waits its turn.
    app.state.admitted_chats = copy.copy(chats)
    app.state.admitted_chats.decode = pool.decoded_admitted


def _event_log(redis: Redis, settings: Settings, durability: Durability) -> EventLog:
    """The process's event log, its limits and TTLs from ``settings``."""
    return EventLog(
        redis,
        ended_ttl=settings.ended_ttl_seconds,
        idle_ttl=settings.idle_ttl_seconds,
        max_event_bytes=settings.max_event_bytes,
        max_stream_events=settings.max_stream_events,
        max_stream_bytes=settings.max_stream_bytes,
        webhooks=settings.webhook_url is not None,
        durability=durability,
    )


async def _durability(app: FastAPI, redis: Redis, settings: Settings) -> Durability:
    """The process's ``BROADCASTER_DURABILITY``, checked against the server: one it cannot
    keep stops the start (``serve`` checks before, ``refuse_unkept_durability``)."""
    durability = Durability(redis, settings.durability_policy())
    try:
        await durability.check_at_start()
    except DurabilityUnsupported:
        await redis.aclose()
        raise
    return durability


def refuse_unkept_durability(settings: Settings, redis_url: str, prog: str) -> None:
    """Before the server starts: a ``BROADCASTER_DURABILITY`` the server cannot keep
    (``fsync`` without ``WAITAOF`` or ``appendonly``) stops the process with one line
    (exit 2), as a malformed setting does."""
    policy = settings.durability_policy()
    if not policy.waits:
        return

    async def probe() -> None:
        redis = connection.command_client(redis_url, 2)
        try:
            await Durability(redis, policy).check_at_start()
        finally:
            await redis.aclose()

    try:
        asyncio.run(probe())
    except DurabilityUnsupported as exc:
        bad_settings(prog, str(exc))


async def _revocations(app: FastAPI, redis: Redis, durability: Durability) -> Revocations:
    """The revoked tokens, loaded; one learnt ends the open responses of its tokens here
    (``viewers.expiry``)."""
    settings: Settings = app.state.settings
    keep = settings.token_max_lifetime_seconds + settings.token_leeway_seconds
    revocations = Revocations(redis, durability, keep=keep, limit=settings.max_revocations)
    await revocations.start()
    expiries = app.state.viewing.expiries

    def revoked() -> None:
        expiries.end_revoked(revocations.revokes)

    revocations.on_revoked = revoked
    return revocations


def _hub_config(settings: Settings) -> HubConfig:
    return HubConfig(
        viewer_buffer=settings.viewer_buffer,
        keepalive=settings.keepalive_seconds,
        quiet_check=settings.quiet_check_seconds,
        probe=settings.pubsub_probe_seconds,
        linger=settings.topic_linger_seconds,
        admit_per_second=settings.admit_per_second,
        admit_wait=settings.admit_wait_seconds,
        admit_lag=settings.admit_lag_ms / 1000,
        drain_retry_ms=settings.drain_retry_ms,
        drain_window_ms=settings.drain_window_ms,
    )


def _sweepers(
    app: FastAPI, settings: Settings, event_log: EventLog, resolver: push.Resolver
) -> list[asyncio.Task[None]]:
    """The loops every front-end runs, each doing its round under a lock of its own:
    overdue generations ended, expired approvals denied, chats' waiting messages
    started, ended generations' usage settled, chats' turns settled; the last four, and
    the followers of chats' streams, woken by the wake channels (``fanout/wakes.py``), not
    polling."""
    overdue = OverdueJobs(app.state.jobs, event_log, settings.queued_timeout_seconds)
    app.state.approvals = Approvals(event_log, app.state.jobs)
    app.state.approvals.on_decided = app.state.metrics.approval_decided
    pump = ChatPump(
        app.state.admitted_chats,
        app.state.generations,
        app.state.jobs,
        settings.request_defaults(),
        new_stream_id,
        admission=settings.admission,
    )
    app.state.chat_followers = ChatFollowers()
    settler = Settler(app.state.ledger, app.state.metrics.usage_settled)
    turns = TurnSettler(app.state.chats, event_log, app.state.owners)
    wakes = Wakes(
        resolver,
        event_log.db,
        [
            pump,
            app.state.approvals,
            app.state.chat_followers,
            settler,
            turns,
            app.state.revocations,
        ],
        probe_seconds=settings.pubsub_probe_seconds,
    )
    return [
        asyncio.create_task(wakes.run(), name="wakes"),
        asyncio.create_task(overdue.run(), name="overdue-jobs"),
        asyncio.create_task(app.state.approvals.run(), name="expired-approvals"),
        asyncio.create_task(pump.run(), name="chat-pump"),
        asyncio.create_task(settler.run(), name="settle-usage"),
        asyncio.create_task(turns.run(), name="chat-settle"),
    ]


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> FrontendMetrics:
    metrics: FrontendMetrics = request.app.state.metrics
    return metrics


async def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


async def get_event_log(request: Request) -> EventLog:
    event_log: EventLog = request.app.state.log
    return event_log


async def get_generations(request: Request) -> Generations:
    generations: Generations = request.app.state.generations
    return generations


async def get_hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


async def get_durable(request: Request) -> DurableLog:
    durable: DurableLog = request.app.state.durable
    return durable


async def get_idempotency(request: Request) -> Idempotency:
    idempotency: Idempotency = request.app.state.idempotency
    return idempotency


async def get_chats(request: Request) -> Chats:
    chats: Chats = request.app.state.chats
    return chats


async def get_admitted_chats(request: Request) -> Chats:
    """The chats, whose whole reads wait for the pool rather than be refused: for work
    already admitted (a run's history once its answer started)."""
    chats: Chats = request.app.state.admitted_chats
    return chats


async def get_owners(request: Request) -> Owners:
    owners: Owners = request.app.state.owners
    return owners


async def get_approvals(request: Request) -> Approvals:
    approvals: Approvals = request.app.state.approvals
    return approvals


async def get_leases(request: Request) -> Leases:
    leases: Leases = request.app.state.leases
    return leases


async def get_ledger(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


async def get_jobs(request: Request) -> JobQueue:
    jobs: JobQueue = request.app.state.jobs
    return jobs


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[FrontendMetrics, Depends(get_metrics)]
RedisDep = Annotated[Redis, Depends(get_redis)]
EventLogDep = Annotated[EventLog, Depends(get_event_log)]
GenerationsDep = Annotated[Generations, Depends(get_generations)]
HubDep = Annotated[Hub, Depends(get_hub)]
JobsDep = Annotated[JobQueue, Depends(get_jobs)]
LedgerDep = Annotated[Ledger, Depends(get_ledger)]
LeasesDep = Annotated[Leases, Depends(get_leases)]
ChatsDep = Annotated[Chats, Depends(get_chats)]
AdmittedChatsDep = Annotated[Chats, Depends(get_admitted_chats)]
OwnersDep = Annotated[Owners, Depends(get_owners)]
ApprovalsDep = Annotated[Approvals, Depends(get_approvals)]
