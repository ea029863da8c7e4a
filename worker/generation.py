"""Running one generation: claim its stream, call the model, append contract events.

Every append is conditional on the seq this writer last wrote and on owning the stream,
so a worker that lost its job to another (or whose stream was cancelled) is refused and
stops instead of interleaving. Provider errors before any output are retried with
backoff; after output, the stream ends with ``error``. When an earlier attempt (a worker
that died) had shown output, the new attempt starts with ``data-retry``. Redis faults
under a running attempt (an outage, a lost reply, lost writes) are handled by
``StreamWriter``; see docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors

from broadcaster.log import (
    AppendRefused,
    Claim,
    EventLog,
    StaleWriter,
    StreamEnded,
    StreamFull,
    StreamNotFound,
)
from broadcaster.metrics import WorkerMetrics
from worker.mapping import EventMapper, merge_deltas
from worker.providers.base import Provider, ProviderError

log = logging.getLogger("worker.generation")

_END = object()


@dataclass(frozen=True, slots=True)
class Policy:
    merge_s: float = 0.02
    max_attempts: int = 3
    provider_retries: int = 4
    retry_base_s: float = 0.5
    retry_max_s: float = 20.0
    queue_size: int = 256
    redis_patience_s: float = 60.0
    """How long an append is retried while Redis does not answer; then the attempt fails
    and, after the lease, a worker takes the generation over."""


@dataclass(frozen=True, slots=True)
class _Batch:
    """One atomic append, kept so it can be written again if Redis loses it."""

    events: list[dict[str, Any]]
    meta: dict[str, str] | None
    text_append: str
    text_reset: str | None


class WritesLost(AppendRefused):
    """Redis lost events this writer cannot write again (they predate its attempt)."""


class Fenced(StaleWriter):
    """Found while repairing a loss: another writer has the stream now."""


_REDIS_DOWN = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.RedisClusterException,
    OSError,
)
"""Errors after which an append may or may not have happened: retried, conditionally.
(redis-py's ConnectionError and TimeoutError, BusyLoadingError among them; on a Cluster,
CLUSTERDOWN and TRYAGAIN, and redis-py's own error when no node serves the slot yet, all
of them a failover in progress. Any other ResponseError is an answer, not an outage, and
is not retried.)"""


class StreamWriter:
    """Appends a generation's events, merging deltas that arrive within ``merge_s``.

    Every append is conditional on the seq this writer last wrote and on owning the
    stream. That makes the two Redis faults below safe to handle here:

    * Redis does not answer (restarting, a dropped connection): the append is retried
      with backoff for up to ``patience_s``. A retry of an append that did happen (only
      the reply was lost) is refused as stale at ``seq + n``; the writer recognises its
      own events there and goes on.
    * Redis comes back without the newest writes (no persistence, an older copy, a
      replica that was behind): the stream's seq is *below* the writer's. Nobody else
      removes events, so this can only be a loss: the writer takes the stream again and
      writes the lost batches of its attempt again, byte for byte, so a viewer that saw
      them sees nothing change. A loss that reaches back before this attempt cannot be
      repaired: ``WritesLost``.

    What it appended (``history``) is kept for that, for one attempt: as bounded as the
    stream itself (``BROADCASTER_MAX_STREAM_BYTES``).
    """

    def __init__(
        self,
        event_log: EventLog,
        stream_id: str,
        owner: str,
        seq: int,
        metrics: WorkerMetrics | None = None,
        *,
        request: dict[str, Any] | None = None,
        patience_s: float = 60.0,
        retry_max_s: float = 2.0,
    ) -> None:
        self.metrics = metrics
        self.log = event_log
        self.stream_id = stream_id
        self.owner = owner
        self.seq = seq
        self.start_seq = seq
        self.request = request
        self.patience_s = patience_s
        self.retry_max_s = retry_max_s
        self.history: list[_Batch] = []
        self.pending: list[dict[str, Any]] = []
        self.first_pending_at: float | None = None
        self.wrote = False

    def add(self, events: list[dict[str, Any]]) -> None:
        if events and self.first_pending_at is None:
            self.first_pending_at = time.monotonic()
        self.pending.extend(events)

    def deadline(self, merge_s: float) -> float | None:
        return None if self.first_pending_at is None else self.first_pending_at + merge_s

    async def flush(
        self,
        events: list[dict[str, Any]] | None = None,
        *,
        meta: dict[str, str] | None = None,
        text_reset: str | None = None,
    ) -> None:
        batch = merge_deltas(self.pending + (events or []))
        self.pending = []
        self.first_pending_at = None
        if not batch:
            return
        text = "".join(e["delta"] for e in batch if e["type"] == "text-delta")
        await self._write(_Batch(batch, meta, text, text_reset))
        self.wrote = True
        if self.metrics is not None:
            self.metrics.appended.inc(len(batch))

    def discard(self) -> None:
        self.pending = []
        self.first_pending_at = None

    async def _append(self, b: _Batch) -> int:
        return await self.log.append(
            self.stream_id,
            b.events,
            kind="generation",
            expect_seq=self.seq,
            owner=self.owner,
            meta=b.meta,
            text_append=b.text_append,
            text_reset=b.text_reset,
        )

    async def _write(self, b: _Batch) -> None:
        delay = 0.05
        give_up_at = time.monotonic() + self.patience_s
        repair: Callable[[], Awaitable[None]] | None = None
        while True:
            try:
                if repair is not None:
                    await repair()
                    repair = None
                self.seq = await self._append(b)
                break
            except _REDIS_DOWN as exc:
                if time.monotonic() + delay > give_up_at:
                    raise
                repair = None  # the next refusal says where the stream is now
                log.warning(
                    "generation %s: append failed (%s); retrying in %.2fs",
                    self.stream_id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
            except Fenced:
                raise
            except StaleWriter as exc:
                if exc.last_seq == self.seq + len(b.events) and await self.log.holds(
                    self.stream_id, self.seq, b.events
                ):
                    log.info("generation %s: the append had happened (reply lost)", self.stream_id)
                    self.seq = exc.last_seq
                    break
                if exc.last_seq >= self._high_water():
                    raise  # another writer moved on: fenced
                repair = functools.partial(self._rewrite, exc.last_seq)
            except StreamNotFound:
                repair = self._recreate
        self.history.append(b)

    def _high_water(self) -> int:
        """The seq this attempt had reached: what the stream held before any loss (above
        ``self.seq`` only while a repair is under way)."""
        return self.start_seq + sum(len(b.events) for b in self.history)

    async def _rewrite(self, stream_seq: int) -> None:
        """The stream went back to ``stream_seq``: write this attempt's lost batches again."""
        seq, kept = self.start_seq, 0
        while seq < stream_seq and kept < len(self.history):
            seq += len(self.history[kept].events)
            kept += 1
        if seq != stream_seq:
            raise WritesLost(
                self.stream_id,
                stream_seq,
                f"stream {self.stream_id} went back to seq {stream_seq}, before this "
                f"attempt's events (from seq {self.start_seq}): they cannot be written again",
            )
        # Below this attempt's newest event: only a loss can do that (nobody removes
        # events), unless another worker took over after the loss and wrote its own. The
        # stream must still be this attempt's events, exactly, up to where it now ends.
        written = [e for b in self.history[:kept] for e in b.events]
        if written and not await self.log.holds(self.stream_id, self.start_seq, written):
            raise Fenced(self.stream_id, self._high_water(), "another writer took the stream")
        log.warning(
            "generation %s: Redis lost events %d..%d; writing them again",
            self.stream_id,
            stream_seq + 1,
            self._high_water(),
        )
        # The hash went back too and may name an earlier owner: take the stream again.
        claim = await self.log.claim(self.stream_id, self.owner)
        if claim is None:
            raise StreamEnded(self.stream_id, stream_seq, f"stream {self.stream_id} has ended")
        if claim.last_seq != stream_seq:
            # Someone wrote meanwhile: treat it as another writer (fenced), never loop.
            raise Fenced(self.stream_id, self._high_water(), "the stream changed while repairing")
        self.seq = stream_seq
        for b in self.history[kept:]:
            self.seq = await self._append(b)

    async def _recreate(self) -> None:
        """The stream's keys are gone (Redis lost everything): if this attempt wrote the
        whole stream, create it again and write it all; else it cannot be repaired."""
        if self.start_seq != 0 or self.request is None:
            raise StreamNotFound(self.stream_id, 0, f"stream {self.stream_id} vanished")
        log.warning(
            "generation %s: its stream vanished from Redis; writing it again", self.stream_id
        )
        await self.log.recreate_generation(self.stream_id, self.request)
        await self._rewrite(0)


async def run_generation(
    event_log: EventLog,
    provider: Provider,
    stream_id: str,
    owner: str,
    policy: Policy,
    *,
    metrics: WorkerMetrics | None = None,
) -> None:
    """Run one generation to its terminal event. Raises ``AppendRefused`` if another
    writer (or a cancel) took the stream; cancellation stops the model call."""
    claim = await event_log.claim(stream_id, owner)
    if claim is None:
        log.info("generation %s: already ended or gone; nothing to do", stream_id)
        return
    meta = await event_log.meta(stream_id)
    if meta is None:
        return
    request: dict[str, Any] = json.loads(meta["request"])
    writer = StreamWriter(
        event_log,
        stream_id,
        owner,
        claim.last_seq,
        metrics,
        request=request,
        patience_s=policy.redis_patience_s,
    )
    try:
        await _run_attempt(provider, request, writer, policy, claim)
    except WritesLost as exc:
        # Viewers may have seen events Redis no longer holds: end the stream with an error
        # right where it now is, so nobody is shown a spliced stream (a viewer whose
        # resume point is past it gets 409).
        log.error("generation %s: %s", stream_id, exc)
        with contextlib.suppress(AppendRefused):
            await event_log.append(
                stream_id,
                [_error("events of this generation were lost by the server; start over")],
                kind="generation",
                meta={"error": "events lost by Redis"},
            )
    except StreamNotFound:
        # Its keys are gone and it could not be rebuilt: viewers are answered 404.
        log.error("generation %s: its stream vanished from Redis and cannot be rebuilt", stream_id)


async def _run_attempt(
    provider: Provider,
    request: dict[str, Any],
    writer: StreamWriter,
    policy: Policy,
    claim: Claim,
) -> None:
    stream_id = writer.stream_id
    if claim.attempt > policy.max_attempts:
        await writer.flush(
            [_error(f"gave up after {policy.max_attempts} attempts (workers were lost)")],
            meta={"error": "worker lost too many times"},
        )
        return
    if claim.last_seq > 0:
        # An earlier attempt showed output and its worker was lost: tell viewers to discard.
        reason = "the worker running this generation was lost"
        retry = {"type": "data-retry", "data": {"attempt": claim.attempt, "reason": reason}}
        await writer.flush([retry], text_reset="")
    log.info("generation %s: attempt %d from seq %d", stream_id, claim.attempt, claim.last_seq)

    try:
        await _attempt(provider, request, writer, policy, stream_id)
    except StreamFull as exc:
        # Only a terminal event fits now; the model call is already closed.
        log.warning("generation %s: %s", stream_id, exc)
        writer.discard()
        await writer.flush(
            [_error("the generation reached the stream's size limit")],
            meta={"error": "stream size limit reached"},
        )


async def _attempt(
    provider: Provider,
    request: dict[str, Any],
    writer: StreamWriter,
    policy: Policy,
    stream_id: str,
) -> None:
    """One attempt, with retries of provider errors that happen before any output."""
    for retry_no in range(policy.provider_retries + 1):
        mapper = EventMapper(stream_id)
        try:
            await _stream_once(provider, request, mapper, writer, policy)
            _count_tokens(writer.metrics, mapper)
            return
        except ProviderError as exc:
            _count_tokens(writer.metrics, mapper)
            if writer.metrics is not None:
                writer.metrics.provider_errors.labels(exc.kind).inc()
            if writer.wrote or not exc.retryable or retry_no == policy.provider_retries:
                if not writer.wrote:
                    writer.discard()  # nothing was shown: show only the error
                log.warning("generation %s failed: %s", stream_id, exc.message)
                await writer.flush(
                    [_error(exc.message)], meta={"error": exc.message, **_usage_meta(mapper)}
                )
                return
            delay = exc.retry_after
            if delay is None:
                delay = policy.retry_base_s * 2**retry_no
            delay = min(delay, policy.retry_max_s)
            log.info(
                "generation %s: %s; retry %d in %.1fs", stream_id, exc.message, retry_no + 1, delay
            )
            writer.discard()
            await asyncio.sleep(delay)


def _count_tokens(metrics: WorkerMetrics | None, mapper: EventMapper) -> None:
    if metrics is not None and mapper.started:
        usage = mapper.usage
        metrics.tokens.labels("input").inc(usage.get("input_tokens", 0))
        metrics.tokens.labels("output").inc(usage.get("output_tokens", 0))


def _error(text: str) -> dict[str, Any]:
    return {"type": "error", "errorText": text}


def _usage_meta(mapper: EventMapper) -> dict[str, str]:
    # Usage is known once message_start came; before it (the call failed), it stays null.
    return {"usage": json.dumps(mapper.usage)} if mapper.started else {}


async def _stream_once(
    provider: Provider,
    request: dict[str, Any],
    mapper: EventMapper,
    writer: StreamWriter,
    policy: Policy,
) -> None:
    """One model call, its events merged and appended as they come."""
    queue: asyncio.Queue[Any] = asyncio.Queue(policy.queue_size)

    async def pump(events: AsyncIterator[dict[str, Any]]) -> None:
        try:
            async for raw in events:
                await queue.put(raw)
            await queue.put(_END)
        except ProviderError as exc:
            await queue.put(exc)
        except Exception as exc:  # a provider bug: report it, do not vanish
            message = f"model call failed: {type(exc).__name__}: {exc}"
            await queue.put(ProviderError(message, retryable=False))

    async with provider.stream(request) as events:
        task = asyncio.create_task(pump(events), name=f"model-{writer.stream_id}")
        try:
            while True:
                deadline = writer.deadline(policy.merge_s)
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    async with asyncio.timeout(timeout):
                        item = await queue.get()
                except TimeoutError:
                    await writer.flush()
                    continue
                if item is _END:
                    break
                if isinstance(item, ProviderError):
                    raise item
                out = mapper.feed(item)
                if any(e["type"] == "finish" for e in out):
                    writer.add(out)
                    await writer.flush(meta=_usage_meta(mapper))
                    return
                writer.add(out)
                if policy.merge_s <= 0:
                    await writer.flush()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    # The model's stream ended without message_stop: never leave the stream open.
    raise ProviderError(
        "the model stream ended before message_stop", retryable=True, kind="incomplete"
    )


__all__ = ["AppendRefused", "Policy", "StreamWriter", "run_generation"]
