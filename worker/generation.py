"""Running one generation: claim its stream, call the model, append contract events.

Every append is conditional on the seq this writer last wrote and on owning the stream,
so a worker that lost its job to another (or whose stream was cancelled) is refused and
stops instead of interleaving. Provider errors before any output are retried with
backoff; after output, the stream ends with ``error``. When an earlier attempt (a worker
that died) had shown output, the new attempt starts with ``data-retry``. Redis faults
under a running attempt (an outage, a lost reply, lost writes) are handled by
``StreamWriter`` (``worker.writer``); see docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from broadcaster.core.generations import Claim, Generations
from broadcaster.core.log import AppendRefused, StreamFull, StreamNotFound
from worker.mapping import EventMapper
from worker.metrics import WorkerMetrics
from worker.providers.base import Provider, ProviderError
from worker.writer import StreamWriter, WritesLost

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


async def run_generation(
    generations: Generations,
    provider: Provider,
    stream_id: str,
    owner: str,
    policy: Policy,
    *,
    metrics: WorkerMetrics | None = None,
) -> None:
    """Run one generation to its terminal event. Raises ``AppendRefused`` if another
    writer (or a cancel) took the stream; cancellation stops the model call."""
    event_log = generations.log
    claim = await generations.claim(stream_id, owner)
    if claim is None:
        log.info("generation %s: already ended or gone; nothing to do", stream_id)
        return
    meta = await event_log.meta(stream_id)
    if meta is None:
        return
    request: dict[str, Any] = json.loads(meta["request"])
    message_id = _message_id(request, meta, stream_id)
    writer = StreamWriter(
        generations,
        stream_id,
        owner,
        claim.last_seq,
        metrics,
        request=request,
        patience_s=policy.redis_patience_s,
    )
    try:
        await _run_attempt(provider, request, writer, policy, claim, message_id=message_id)
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
    *,
    message_id: str,
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
        await _attempt(provider, request, writer, policy, message_id)
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
    message_id: str,
) -> None:
    """One attempt, with retries of provider errors that happen before any output."""
    stream_id = writer.stream_id
    for retry_no in range(policy.provider_retries + 1):
        mapper = EventMapper(message_id)
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


def _message_id(request: dict[str, Any], meta: dict[str, str], stream_id: str) -> str:
    """The ``start`` event's ``messageId``: the UI message a chat continues (its endpoint
    stores ``ui_message_id`` with the request, or in the stream's metadata), else the
    generation's id."""
    given = request.get("ui_message_id") or meta.get("ui_message_id")
    return given if isinstance(given, str) and given else stream_id


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


__all__ = ["AppendRefused", "Policy", "run_generation"]
