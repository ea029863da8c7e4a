"""The worker process: takes generation jobs, runs up to N at once, hands work back on
shutdown.

Three loops, all owned by ``Worker.run``:

* *take*: new jobs with ``XREADGROUP`` (blocking, on its own connection) and, every half
  lease, jobs abandoned by dead workers with ``XAUTOCLAIM``;
* *watch*: every ``cancel_poll_seconds`` one pipelined read of the running generations'
  ``ended`` flags (a cancel appends ``abort`` from the API; this stops the model call),
  and every third of a lease a refresh of this worker's hold on its jobs;
* one task per running generation, in a task group.

On ``stop()`` (SIGTERM) the worker stops taking jobs, lets running generations finish for
up to ``grace_seconds``, then stops the rest and hands their jobs back to the queue, where
another worker resumes them (with ``data-retry`` if they had shown output).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time

from prometheus_client import start_http_server
from redis.asyncio import Redis

from broadcaster import connection, keys
from broadcaster.jobs import Job, JobQueue
from broadcaster.log import EventLog, StaleWriter, StreamEnded
from broadcaster.logs import current_stream
from broadcaster.metrics import WorkerMetrics
from worker.generation import Policy, run_generation
from worker.providers.base import Provider
from worker.settings import WorkerSettings

log = logging.getLogger("worker")

_BLOCK_MS = 2000


def make_provider(settings: WorkerSettings) -> Provider:
    if settings.provider == "fake":
        from worker.providers.fake import FakeProvider

        return FakeProvider(settings.fake_delay_ms)
    from worker.providers.anthropic import AnthropicProvider

    return AnthropicProvider(settings.read_timeout_seconds)


class Worker:
    def __init__(
        self, settings: WorkerSettings, redis_url: str, provider: Provider | None = None
    ) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.provider = provider or make_provider(settings)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.policy = Policy(
            merge_s=settings.merge_ms / 1000,
            max_attempts=settings.max_attempts,
            provider_retries=settings.provider_retries,
            retry_base_s=settings.retry_base_seconds,
            retry_max_s=settings.retry_max_seconds,
            redis_patience_s=settings.redis_patience_seconds,
        )
        self._stopping = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._running: dict[str, tuple[Job, asyncio.Task[None]]] = {}
        self._cancelled: set[str] = set()
        self._handing_back = False
        self.metrics = WorkerMetrics()

    def stop(self) -> None:
        """Stop taking jobs and shut down (safe to call twice, from a signal handler's
        ``loop.add_signal_handler`` callback)."""
        self._stopping.set()

    async def run(self) -> None:
        redis = connection.command_client(self.redis_url, self.settings.redis_pool_size)
        reader = connection.blocking_client(self.redis_url, _BLOCK_MS)
        self.log = EventLog(
            redis,
            ended_ttl=self.settings.ended_ttl_seconds,
            idle_ttl=self.settings.idle_ttl_seconds,
            # The worker is trusted: a whole tool input may be one large event. The
            # stream's own limits still hold.
            max_event_bytes=self.settings.max_stream_bytes,
            max_stream_events=self.settings.max_stream_events,
            max_stream_bytes=self.settings.max_stream_bytes,
        )
        self.jobs = JobQueue(redis)
        self.redis = redis
        log.info(
            "worker %s: provider %s, concurrency %d",
            self.consumer,
            self.settings.provider,
            self.settings.concurrency,
        )
        metrics_server = None
        if self.settings.metrics_port:
            metrics_server = start_http_server(
                self.settings.metrics_port,
                addr=self.settings.metrics_host,
                registry=self.metrics.registry,
            )
        try:
            async with asyncio.TaskGroup() as gens:
                self._gens = gens
                taker = asyncio.create_task(self._take_loop(reader), name="worker-take")
                watcher = asyncio.create_task(self._watch_loop(), name="worker-watch")
                try:
                    await self._stopping.wait()
                finally:
                    taker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await taker
                    await self._drain()
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
        finally:
            if metrics_server is not None:
                server, thread = metrics_server
                server.shutdown()
                server.server_close()
                thread.join()
            await self.provider.aclose()
            await reader.aclose()
            await redis.aclose()
            log.info("worker %s: stopped", self.consumer)

    async def _drain(self) -> None:
        tasks = [t for _, t in self._running.values()]
        if tasks:
            log.info(
                "finishing %d generation(s), up to %.0fs", len(tasks), self.settings.grace_seconds
            )
            await asyncio.wait(tasks, timeout=self.settings.grace_seconds)
        self._handing_back = True
        rest = [t for _, t in self._running.values()]
        for t in rest:
            t.cancel()
        if rest:
            await asyncio.wait(rest)

    # --- taking jobs ---

    async def _take_loop(self, reader: Redis) -> None:
        backoff = 0.1
        sweep_every = self.settings.lease_seconds / 2
        next_sweep = 0.0
        group_ready = False
        while True:
            free = self.settings.concurrency - len(self._running)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                if not group_ready:
                    await self.jobs.ensure_group()
                    group_ready = True
                taken: list[Job] = []
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + sweep_every
                    lease_ms = int(self.settings.lease_seconds * 1000)
                    taken = await self.jobs.take_abandoned(self.consumer, lease_ms, free)
                if not taken:
                    # Abandoned jobs start at once: a blocking read first would hold them
                    # back for up to _BLOCK_MS. New jobs are read on the next round.
                    taken = await self.jobs.take(reader, self.consumer, free, _BLOCK_MS)
                backoff = 0.1
            except connection.REDIS_ERRORS as exc:
                log.warning("taking jobs: %s; retrying in %.1fs", exc, backoff)
                group_ready = group_ready and "NOGROUP" not in str(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            for job in taken:
                self._start(job)

    def _start(self, job: Job) -> None:
        running = self._running.get(job.generation_id)
        if running is not None:
            if running[0].entry_id != job.entry_id:
                # A second queue entry for a generation already running here.
                self._gens.create_task(self._ack_quietly(job))
            return
        task = self._gens.create_task(self._run_job(job), name=f"gen-{job.generation_id}")
        self._running[job.generation_id] = (job, task)

    async def _hand_back(self, job: Job) -> None:
        await self.log.release(job.generation_id, self.consumer)
        await self.jobs.hand_back(job)

    async def _ack_quietly(self, job: Job) -> None:
        with contextlib.suppress(*connection.REDIS_ERRORS):
            await self.jobs.done(job)

    async def _run_job(self, job: Job) -> None:
        gid = job.generation_id
        current_stream.set(gid)  # this task's log lines name the generation
        try:
            self.metrics.running.inc()
            await run_generation(
                self.log, self.provider, gid, self.consumer, self.policy, metrics=self.metrics
            )
            await self.jobs.done(job)
            info = await self.log.info(gid)
            ended = info.ended if info else None
            outcome = {"finish": "completed", "error": "failed", "abort": "cancelled"}
            self.metrics.finished.labels(outcome.get(ended or "", "lost")).inc()
        except StreamEnded:
            self.metrics.finished.labels("cancelled").inc()
            log.info("generation %s: ended elsewhere (cancelled); stopped", gid)
            await self._ack_quietly(job)
        except StaleWriter as exc:
            # Another worker owns the stream now; its queue entry is its own business.
            self.metrics.finished.labels("lost").inc()
            log.warning("generation %s: %s; giving it up", gid, exc)
        except asyncio.CancelledError:
            self.metrics.finished.labels(
                "cancelled" if gid in self._cancelled else "handed_back"
            ).inc()
            if gid in self._cancelled:
                log.info("generation %s: cancelled; model call stopped", gid)
                await asyncio.shield(self._ack_quietly(job))
            elif self._handing_back:
                log.info("generation %s: handed back for another worker", gid)
                with contextlib.suppress(*connection.REDIS_ERRORS):
                    await asyncio.shield(self._hand_back(job))
            raise
        except connection.REDIS_ERRORS as exc:
            # Redis still down after the writer's own retries, or the ack failed after a
            # finished generation (a failover): expected, so no traceback. Left pending,
            # it is taken over after the lease, and found ended if it had ended.
            self.metrics.finished.labels("lost").inc()
            log.warning("generation %s: Redis unavailable (%s); it will be retried", gid, exc)
        except Exception:
            self.metrics.finished.labels("lost").inc()
            # Left pending: after the lease another worker (or this one) takes it over.
            log.exception("generation %s: failed unexpectedly; it will be retried", gid)
        finally:
            self.metrics.running.dec()
            self._running.pop(gid, None)
            self._cancelled.discard(gid)
            self._slot_free.set()

    # --- watching running generations ---

    async def _watch_loop(self) -> None:
        refresh_every = self.settings.lease_seconds / 3
        next_refresh = time.monotonic() + refresh_every
        while True:
            await asyncio.sleep(self.settings.cancel_poll_seconds)
            if not self._running:
                continue
            running = list(self._running.items())
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for gid, _ in running:
                        pipe.hget(keys.meta_key(gid), "ended")
                    ended = await pipe.execute()
                for (gid, (_, task)), flag in zip(running, ended, strict=True):
                    if flag == b"abort" and not task.done():
                        self._cancelled.add(gid)
                        task.cancel()
                if time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + refresh_every
                    ids = [job.entry_id for job, _ in self._running.values()]
                    await self.jobs.refresh(self.consumer, ids)
            except connection.REDIS_ERRORS as exc:
                log.warning("watching generations: %s", exc)
