"""The worker process: takes generation jobs, runs up to N at once, hands work back on
shutdown.

``Worker`` wires and owns ``JobTaker`` (``taker``: takes and holds jobs, takes over the
dead's) and ``RunningGenerations`` (``dispatch``: a task per generation), and holds its
liveness subscription to the very end, so it is never found dead while it runs
anything. On ``stop()`` (SIGTERM) each generation runs to the end of its step and is
handed back there, or at once after ``grace_seconds``; a hand-back counts no attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket

from redis.asyncio import Redis

from broadcaster.core import connection, contain
from broadcaster.core.durability import Durability, DurabilityUnsupported
from broadcaster.core.durability import Policy as DurabilityPolicy
from broadcaster.core.eventlog import EventLog
from broadcaster.core.process import MetricsServer
from broadcaster.core.settings import bad_settings
from broadcaster.generations.jobs import JobQueue
from broadcaster.generations.lifecycle import Generations
from broadcaster.generations.liveness import DeadWorkers, Subscription
from broadcaster.generations.request import PROVIDERS
from worker.agents.session import AgentProvider
from worker.agents.spec import agent_names, load_agents
from worker.attempt import Policy
from worker.dispatch import RunningGenerations
from worker.metrics import WorkerMetrics
from worker.providers.base import Provider, Providers
from worker.settings import WorkerSettings
from worker.taker import BLOCK_MS, JobTaker, Liveness
from worker.tools import ToolBox, load_tools

log = logging.getLogger("worker")


def make_provider(settings: WorkerSettings, name: str) -> Provider:
    if name == "fake":
        from worker.providers.fake import FakeProvider

        return FakeProvider(settings.fake_delay_ms)
    if name == "openai" and settings.openai_api == "responses":
        from worker.providers.openai_responses import OpenAIResponsesProvider

        return OpenAIResponsesProvider(
            settings.read_timeout_seconds, caching=settings.prompt_caching
        )
    if name == "openai":
        from worker.providers.openai import OpenAIProvider

        return OpenAIProvider(
            settings.read_timeout_seconds,
            settings.openai_max_tokens_param,
            continue_final_message=settings.openai_continue_final_message,
            caching=settings.prompt_caching,
        )
    from worker.providers.anthropic import AnthropicProvider

    return AnthropicProvider(settings.read_timeout_seconds, caching=settings.prompt_caching)


def unusable_provider(settings: WorkerSettings) -> str | None:
    """Why a provider this worker would serve cannot authenticate a single call, or None:
    such a worker is refused at start, rather than advertising a provider whose every
    generation would fail."""
    if "anthropic" in settings.served():
        from worker.providers.anthropic import missing_credentials

        return missing_credentials()
    return None  # an OpenAI-compatible server may need no key (Ollama, vLLM)


def make_providers(settings: WorkerSettings, provider: Provider | None = None) -> Providers:
    """The provider to run each request provider's jobs with. The fake stands in for
    every built-in provider, so a demo or a test needs no network whatever the requests
    name; ``provider`` (a test's own) stands in for every built-in provider served. An
    agent (``WORKER_AGENTS``) is served under its own name (``worker.agents``)."""
    served = settings.served()
    agents = load_agents(settings.agents)
    builtins = tuple(n for n in served if n not in agents)
    found: dict[str, Provider]
    if provider is not None or builtins == ("fake",):
        one = provider or make_provider(settings, "fake")
        found = dict.fromkeys(PROVIDERS if builtins == ("fake",) else builtins, one)
    else:
        found = {name: make_provider(settings, name) for name in builtins}
    found.update({name: AgentProvider(name, agents[name]) for name in served if name in agents})
    return found


class Worker:
    def __init__(
        self, settings: WorkerSettings, redis_url: str, provider: Provider | None = None
    ) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.providers = make_providers(settings, provider)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.policy = Policy(
            merge_s=settings.merge_ms / 1000,
            max_attempts=settings.max_attempts,
            provider_retries=settings.provider_retries,
            retry_base_s=settings.retry_base_seconds,
            retry_max_s=settings.retry_max_seconds,
            redis_patience_s=settings.redis_patience_seconds,
            tools=ToolBox.of(
                load_tools(settings.tools),
                settings.tool_timeout_seconds,
                settings.tool_max_output_bytes,
                settings.tool_approval_timeout_seconds,
            ),
            max_steps=settings.max_steps,
            takeover=settings.takeover,
        )
        self._stopping = asyncio.Event()
        self.metrics = WorkerMetrics(agent_names(settings.agents))

    def stop(self) -> None:
        """Stop taking jobs and shut down (safe to call twice, from a signal handler's
        ``loop.add_signal_handler`` callback)."""
        self._stopping.set()

    async def run(self) -> None:
        redis = connection.command_client(self.redis_url, self.settings.redis_pool_size)
        reader = connection.blocking_client(self.redis_url, BLOCK_MS)
        durability = await self._durability(redis, reader)
        event_log = self._event_log(redis)
        event_log.durability = durability
        jobs = JobQueue(redis, list(self.providers))
        liveness = self._liveness(redis)
        taker = JobTaker(jobs, self.consumer, self.settings.lease_seconds, self.metrics, liveness)
        with contextlib.suppress(*connection.REDIS_ERRORS):
            # Before the line below, which says the worker is up: a request made at once
            # must not be refused for want of a worker. Redis down: the loop retries.
            await taker.advertise()
        # Before the line below too: a scrape made as soon as the worker says it is up
        # finds its metrics.
        metrics_server = await self._serve_metrics()
        alive = await self._subscribe(liveness.subscription)
        log.info(
            "worker %s: provider %s (serving %s), concurrency %d, tools: %s",
            self.consumer,
            ",".join(self.settings.served()),
            ", ".join(self.providers),
            self.settings.concurrency,
            ", ".join(self.policy.tools.tools) or "none",
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                running = RunningGenerations(
                    tasks,
                    Generations(event_log, self.settings.lease_seconds, liveness.dead.current),
                    jobs,
                    providers=self.providers,
                    consumer=self.consumer,
                    policy=self.policy,
                    metrics=self.metrics,
                    concurrency=self.settings.concurrency,
                    cancel_poll_seconds=self.settings.cancel_poll_seconds,
                )
                await self._serve(taker, running, reader)
        finally:
            if liveness.subscription is not None and alive is not None:
                # Last: until its generations are handed back, the worker is alive.
                await _cancel_and_wait(alive)
                await liveness.subscription.leave()
            if metrics_server is not None:
                await metrics_server.stop()
            for provider in {id(p): p for p in self.providers.values()}.values():
                await provider.aclose()
            await reader.aclose()
            await durability.aclose()
            await redis.aclose()
            log.info("worker %s: stopped", self.consumer)

    async def _durability(self, redis: Redis, reader: Redis) -> Durability:
        """The worker's ``BROADCASTER_DURABILITY``, checked against the server: one it cannot
        keep stops the worker with one line, as a malformed setting does."""
        durability = Durability(redis, DurabilityPolicy.of(self.settings))
        try:
            await durability.check_at_start()
        except DurabilityUnsupported as exc:
            await reader.aclose()
            await redis.aclose()
            bad_settings("worker", str(exc))
        return durability

    async def _serve(self, taker: JobTaker, running: RunningGenerations, reader: Redis) -> None:
        """Take and run jobs until ``stop()``, then drain."""
        take = asyncio.create_task(taker.take_loop(reader, running), name="worker-take")
        hold = asyncio.create_task(
            taker.hold_loop(running.held_jobs, running.hold), name="worker-hold"
        )
        watch = asyncio.create_task(running.watch_cancels(), name="worker-watch")
        abandoned = asyncio.create_task(running.watch_abandoned(), name="worker-abandoned")
        sweep = asyncio.create_task(
            taker.sweep_loop(running, running.held_jobs), name="worker-sweep"
        )
        try:
            await self._stopping.wait()
        finally:
            await _cancel_and_wait(sweep)
            await _cancel_and_wait(take)
            await taker.hand_back_waiting()
            # While they finish, the generations still hold their jobs and still obey a
            # cancel: those loops stop only after the drain.
            await running.drain(self.settings.grace_seconds)
            await _cancel_and_wait(watch)
            await _cancel_and_wait(abandoned)
            await _cancel_and_wait(hold)

    def _liveness(self, redis: Redis) -> Liveness:
        dead = DeadWorkers(self.settings.lease_seconds)
        every = self.settings.liveness_seconds
        if self.settings.liveness == "lease":
            return Liveness(None, dead, every)
        return Liveness(Subscription(self.redis_url, redis, self.consumer), dead, every)

    async def _subscribe(self, subscription: Subscription | None) -> asyncio.Task[None] | None:
        """Start holding the liveness subscription; wait a moment for its first
        confirmation, so that a worker that says it is up is known to be alive (Redis
        down: it goes on trying)."""
        if subscription is None:
            return None
        task = asyncio.create_task(subscription.run(), name="worker-liveness")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(subscription.confirmed.wait(), 2.0)
        return task

    def _event_log(self, redis: Redis) -> EventLog:
        return EventLog(
            redis,
            ended_ttl=self.settings.ended_ttl_seconds,
            idle_ttl=self.settings.idle_ttl_seconds,
            # The worker is trusted: a whole tool input may be one large event. The
            # stream's own limits still hold.
            max_event_bytes=self.settings.max_stream_bytes,
            max_stream_events=self.settings.max_stream_events,
            max_stream_bytes=self.settings.max_stream_bytes,
        )

    async def _serve_metrics(self) -> MetricsServer | None:
        if not self.settings.metrics_port:
            return None
        server = MetricsServer(self.metrics.registry)
        return await server.start(self.settings.metrics_host, self.settings.metrics_port)


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel one of the worker's loops and wait for it to end (``contain``'s stop: a
    cancel Python 3.11 drops inside a timeout is given again until the loop ends)."""
    await contain.cancel_until_ended([task])
