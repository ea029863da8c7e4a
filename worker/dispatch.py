"""The generations one worker runs: up to ``concurrency`` at once, one task each.

Each task runs ``run_generation`` and settles its job by how the generation left this
worker: acknowledged when it finished, waits for a person, was cancelled or is held by
another live worker; re-added at the queue's tail when handed back on shutdown; left
pending (taken over after the lease) when lost to Redis or a bug. A running
generation's hold is refreshed every third of a lease, so no second worker claims it.
On SIGTERM (``drain``) each generation runs to the end of its step and is handed back
there (``StepBoundary``), or at once when the grace is over; cancels are found by one
pipelined read every ``cancel_poll_seconds``. docs/reliability.md has the whole story.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from broadcaster.core import connection, contain, tracing
from broadcaster.core.eventlog import AppendRefused, StaleWriter, StreamEnded
from broadcaster.core.logconfig import current_stream, current_trace
from broadcaster.generations.jobs import Job, JobQueue
from broadcaster.generations.lifecycle import Generations, Held
from broadcaster.presence.counts import PresenceStore
from worker.attempt import Policy, run_generation
from worker.metrics import WorkerMetrics
from worker.providers.base import HANDED_BACK, Providers
from worker.writer import StepBoundary

log = logging.getLogger("worker")

_OUTCOMES = {"finish": "completed", "error": "failed", "abort": "cancelled"}
"""The ``finished`` metric's outcome for each way a stream ends."""


class RunningGenerations:
    """Runs taken jobs' generations in ``tasks``, the task group that owns and awaits them."""

    def __init__(
        self,
        tasks: asyncio.TaskGroup,
        generations: Generations,
        jobs: JobQueue,
        *,
        providers: Providers,
        consumer: str,
        policy: Policy,
        metrics: WorkerMetrics,
        concurrency: int,
        cancel_poll_seconds: float,
    ) -> None:
        self.generations = generations
        self.log = generations.log
        self.jobs = jobs
        self.providers = providers
        self.consumer = consumer
        self.policy = policy
        self.metrics = metrics
        self.concurrency = concurrency
        self.cancel_poll_seconds = cancel_poll_seconds
        self._tasks = tasks
        self.presence = PresenceStore(generations.log.redis)
        self._unwatched: dict[str, tuple[float, float | None]] = {}
        """Generations that end when nobody watches: seconds allowed, and since when
        nobody has (None: watched at the last look)."""
        self._running: dict[str, tuple[Job, asyncio.Task[None]]] = {}
        self._next: dict[str, Job] = {}
        """A second queue entry for a generation running here, started once that run
        ends (``start``)."""
        self._cancelled: set[str] = set()
        self._handing_back = False
        self._stopping = asyncio.Event()
        """Set by ``drain``: each generation is handed back at its next step's end."""
        self._slot_free = asyncio.Event()

    async def free_slots(self) -> int:
        while (free := self.concurrency - len(self._running)) <= 0:
            self._slot_free.clear()
            await self._slot_free.wait()
        return free

    def free_now(self) -> int:
        return max(0, self.concurrency - len(self._running))

    def held_jobs(self) -> list[Job]:
        """The jobs running here: the ones whose hold is refreshed."""
        return [job for job, _ in self._running.values()]

    async def hold(self) -> None:
        """Refresh this worker's hold on the generations it runs (``Generations.hold``)."""
        await self.generations.hold(list(self._running), self.consumer)

    def start(self, job: Job) -> None:
        running = self._running.get(job.generation_id)
        if running is not None:
            if running[0].entry_id != job.entry_id:
                # A second queue entry for a generation running here: a decision's job
                # can come while the run that asked is still settling (its wait written,
                # its job not yet done). It starts once that run ends, and its claim
                # settles it: run on, or dropped as held or ended. (Acknowledged at once,
                # as it was, the decided generation waited for the sweep's requeue.)
                older = self._next.get(job.generation_id)
                if older is not None and older.entry_id != job.entry_id:
                    self._tasks.create_task(self._ack_quietly(older))  # one is enough
                self._next[job.generation_id] = job
            return
        task = self._tasks.create_task(self._run_job(job), name=f"gen-{job.generation_id}")
        self._running[job.generation_id] = (job, task)

    async def drain(self, grace_seconds: float) -> None:
        """Let each running generation reach its next step's end (handed back there) or
        its own end, for up to ``grace_seconds``; then stop the rest and hand their jobs
        back to the queue at once, where another worker resumes them."""
        self._stopping.set()
        tasks = [t for _, t in self._running.values()]
        if tasks:
            log.info(
                "handing back %d generation(s) at their steps' ends, up to %.0fs",
                len(tasks),
                grace_seconds,
            )
            await asyncio.wait(tasks, timeout=grace_seconds)
        self._handing_back = True
        rest = {t for _, t in self._running.values()}
        for t in rest:
            t.cancel(HANDED_BACK)
        # Cancelled again each second one goes on: on Python 3.11 a cancel that lands in
        # the instant a timeout inside the generation fires (asyncio.timeout, a Redis
        # read's socket timeout) can be taken for that timeout, and the generation would
        # run to its end here instead of being handed back.
        while rest:
            _, rest = await asyncio.wait(rest, timeout=1.0)
            for t in rest:
                log.warning("%s went on after it was cancelled; cancelling it again", t.get_name())
                t.cancel(HANDED_BACK)

    async def watch_cancels(self) -> None:
        outage = contain.Outage("watching generations for a cancel", log)
        while True:
            await asyncio.sleep(outage.pause(self.cancel_poll_seconds))
            if not self._running:
                continue
            try:
                await self._cancel_round()
                outage.ok()
            except connection.REDIS_ERRORS as exc:
                outage.failed(exc)
            except Exception:
                contain.loop_failed("worker-watch", log)

    async def _cancel_round(self) -> None:
        running = list(self._running.items())
        infos = await self.log.infos([gid for gid, _ in running])
        for (gid, (_, task)), info in zip(running, infos, strict=True):
            if info is not None and info.ended == "abort" and not task.done():
                self._cancelled.add(gid)
                task.cancel()

    async def watch_abandoned(self, every: float = 1.0) -> None:
        """End the generations that ask for it (``abandon_after_seconds``) once nobody
        has watched them for that long: ``abort`` with reason ``abandoned``, which the
        cancel watch then turns into a cancelled task, closing the model call. Viewer
        counts are read once a second, two round trips for all of them, never per event."""
        outage = contain.Outage("reading viewer counts", log)
        while True:
            await asyncio.sleep(outage.pause(every))
            try:
                await self._abandon_round()
                outage.ok()
            except connection.REDIS_ERRORS as exc:
                outage.failed(exc)
            except Exception:
                contain.loop_failed("worker-abandoned", log)

    async def _abandon_round(self) -> None:
        gids = [g for g in self._unwatched if g in self._running]
        for gone in set(self._unwatched) - set(gids):
            del self._unwatched[gone]
        if not gids:
            return
        found = await self.presence.viewers(gids)
        now = asyncio.get_running_loop().time()
        for gid, viewers in zip(gids, found, strict=True):
            allowed, since = self._unwatched[gid]
            if viewers.count:
                self._unwatched[gid] = (allowed, None)
            elif since is None:
                self._unwatched[gid] = (allowed, now)
            elif now - since >= allowed:
                del self._unwatched[gid]
                await self._abandon(gid, now - since)

    async def _abandon(self, gid: str, unwatched: float) -> None:
        try:
            await self.log.append(
                gid,
                [{"type": "abort", "reason": "abandoned"}],
                kind="generation",
                owner=self.consumer,
                meta={"error": ""},
            )
        except AppendRefused:
            return  # it ended, or is another worker's now
        except connection.REDIS_ERRORS as exc:
            log.warning("generation %s: could not end it as abandoned: %s", gid, exc)
            return
        self.metrics.abandoned.inc()
        log.info("generation %s: nobody watched it for %.1fs; abandoned", gid, unwatched)

    async def _stored_request(self, gid: str) -> tuple[float | None, str | None]:
        """What the stored request says before the run: seconds unwatched before it is
        abandoned, and the trace it continues (``core/tracing.py``)."""
        raw = await self.generations.stored_request(gid)
        if not raw:
            return None, None
        seconds = json.loads(raw).get("abandon_after_seconds")
        return (float(seconds) if seconds else None), tracing.of_request(raw)

    async def _run_job(self, job: Job) -> None:
        gid = job.generation_id
        current_stream.set(gid)  # this task's log lines name the generation
        parent = None
        with contextlib.suppress(*connection.REDIS_ERRORS, ValueError):
            allowed, parent = await self._stored_request(gid)
            if allowed:
                self._unwatched[gid] = (allowed, asyncio.get_running_loop().time())
        current_trace.set(parent)  # and its trace
        attributes = {"broadcaster.generation.id": gid, "broadcaster.worker": self.consumer}
        with tracing.span("generation", attributes, parent=parent) as span:
            await self._run_traced(job, span)

    async def _run_traced(self, job: Job, span: Any) -> None:
        gid = job.generation_id
        ran = self.metrics.generation_clock(job.provider)
        try:
            self.metrics.running.inc()
            await run_generation(
                self.generations,
                self.providers[job.provider],
                gid,
                self.consumer,
                self.policy,
                metrics=self.metrics,
                stopping=self._stopping,
            )
            await self.jobs.done(job)
            await self._returned(gid, span)
        except StepBoundary as exc:
            span.set_attribute("broadcaster.outcome", "handed_back")
            await self._at_boundary(job, exc)
        except Held:
            await self._held(job)
        except StreamEnded:
            self.metrics.finished.labels("cancelled").inc()
            log.info("generation %s: ended elsewhere (cancelled); stopped", gid)
            await self._ack_quietly(job)
        except StaleWriter as exc:
            # Another worker owns the stream now; its queue entry is its own business.
            self.metrics.finished.labels("lost").inc()
            log.warning("generation %s: %s; giving it up", gid, exc)
        except asyncio.CancelledError:
            await self._stopped(job)
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
            ran()
            self.metrics.running.dec()
            self._running.pop(gid, None)
            self._cancelled.discard(gid)
            self._slot_free.set()
            self._start_next(gid)

    async def _returned(self, gid: str, span: Any) -> None:
        """A run that returned, counted and traced by how it left the stream: its
        terminal event, else waiting for a person, else lost."""
        info = await self.log.info(gid)
        ended = info.ended if info else None
        outcome = _OUTCOMES.get(ended or "")
        if outcome is None:
            status = await self.generations.status(gid)
            outcome = "waiting" if status == "waiting" else "lost"
        self.metrics.finished.labels(outcome).inc()
        span.add_event("end", {"broadcaster.outcome": outcome, "broadcaster.ended": ended or ""})
        span.set_attribute("broadcaster.outcome", outcome)

    def _start_next(self, gid: str) -> None:
        """The second job of ``gid`` that came while it ran here (``start``), if any:
        started now, or handed back at once when the worker is stopping."""
        after = self._next.pop(gid, None)
        if after is None:
            return
        # RuntimeError: the task group is ending; left pending, the job is taken over
        # after the lease.
        with contextlib.suppress(RuntimeError):
            if self._stopping.is_set():  # for another worker, at once
                self._tasks.create_task(self._give_back(after))
            else:
                self.start(after)

    async def _stopped(self, job: Job) -> None:
        """A generation's task was cancelled: by a cancel of its stream, or by the drain."""
        gid = job.generation_id
        cancelled = gid in self._cancelled
        self.metrics.finished.labels("cancelled" if cancelled else "handed_back").inc()
        if cancelled:
            log.info("generation %s: cancelled; model call stopped", gid)
            await asyncio.shield(self._ack_quietly(job))
        elif self._handing_back:
            log.info("generation %s: handed back for another worker", gid)
            with contextlib.suppress(*connection.REDIS_ERRORS):
                await asyncio.shield(self._hand_back(job))

    async def _at_boundary(self, job: Job, at: StepBoundary) -> None:
        """The worker is stopping and the generation reached a step's end: hand it back."""
        self.metrics.finished.labels("handed_back").inc()
        log.info(
            "generation %s: stopping; handed back at a step's end (seq %d)",
            job.generation_id,
            at.seq,
        )
        with contextlib.suppress(*connection.REDIS_ERRORS):
            await self._hand_back(job)  # else: pending, taken over after the lease

    async def _held(self, job: Job) -> None:
        """A live worker holds the generation: this job is a duplicate (a decision's job
        queued again, a job delivered twice). A new one is dropped; one taken over from
        a worker that stopped refreshing it stays pending (its holder may be the one
        that went away a moment after its last refresh: the next look settles it)."""
        gid = job.generation_id
        if job.taken_over:
            log.info("generation %s: held by a live worker; its stale job left pending", gid)
            return
        self.metrics.finished.labels("duplicate").inc()
        log.warning("generation %s: held by a live worker; duplicate job dropped", gid)
        await self._ack_quietly(job)

    async def _give_back(self, job: Job) -> None:
        """A job that never ran here, back to the queue's tail (the worker is stopping)."""
        with contextlib.suppress(*connection.REDIS_ERRORS):
            await self.jobs.hand_back(job)

    async def _hand_back(self, job: Job) -> None:
        await self.generations.release(job.generation_id, self.consumer)
        await self.jobs.hand_back(job)

    async def _ack_quietly(self, job: Job) -> None:
        """Ack ``job``; whatever fails is logged, never raised: this runs in the task
        group of every generation, which one raising task would cancel whole."""
        try:
            await self.jobs.done(job)
        except connection.REDIS_ERRORS:
            pass  # still pending: found done, or taken over, after its lease
        except Exception:
            contain.loop_failed("worker-ack", log, f"generation {job.generation_id}")
