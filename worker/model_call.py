"""One model call of a step: its events mapped to contract events and appended as they
come (merged within the merge window), with retries of provider errors that happen
before the step showed anything.

The call ends at the model's ``MessageEnd``; the step's ``finish-step`` and the
generation's ``finish`` are left to the step loop (``worker.step_loop``), which knows
whether tools run and another step follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from broadcaster.core import tracing
from worker.continuation import RESTARTED_STEP
from worker.mapping import EventMapper
from worker.metrics import CallTiming, WorkerMetrics
from worker.providers.base import Provider, ProviderError
from worker.providers.parts import ModelEvent, PartEnd, ResumePoint, Shown
from worker.splice import Seam
from worker.tools import ToolBox
from worker.transcript import Step
from worker.writer import StreamWriter

log = logging.getLogger("worker.generation")

_END = object()
_HELD_BACK = frozenset({"finish-step", "finish"})


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
    tools: ToolBox = field(default_factory=lambda: ToolBox({}))
    """The tools the worker runs (none: every tool call is the client's)."""
    max_steps: int = 20
    """The most steps a generation may take here, whatever its request asks."""
    takeover: str = "continue"
    """How a step cut off with its worker goes on (``WORKER_TAKEOVER``): ``continue``
    (``worker.continuation``) or ``restart`` (its call made again in a new step, for
    comparison)."""


class CallFailed(Exception):
    """The model call failed for good (after output, or past the retries)."""

    def __init__(self, error: ProviderError, mapper: EventMapper) -> None:
        super().__init__(error.message)
        self.error = error
        self.mapper = mapper


async def call_model(
    provider: Provider,
    request: dict[str, Any],
    writer: StreamWriter,
    policy: Policy,
    *,
    message_id: str,
    started: bool,
    id_prefix: str = "",
    seam: Callable[[], Seam] | None = None,
    restarts: bool = False,
) -> tuple[Step, EventMapper]:
    """One step's model call, its events appended (pending in ``writer`` at the end: the
    caller's next flush writes them, with the step's ending). ``started``: the attempt's
    ``start`` is already in the stream. ``seam``: the call continues a cut step, its
    events joined to it (``worker.splice``; one per try). ``restarts``: the call makes a
    restarted step's call again, its ``start-step`` says so. Raises ``CallFailed``."""
    seq_before = writer.seq
    for retry_no in range(policy.provider_retries + 1):
        mapper = EventMapper(message_id, id_prefix)
        timing = CallTiming(writer.metrics, str(request.get("provider")))
        call = _Call(writer, policy, mapper, started, timing, None if seam is None else seam())
        call.restarts = restarts
        model = str(request.get("model") or "")
        span = tracing.span(f"chat {model}".strip(), _call_attributes(request), kind="CLIENT")
        try:
            with span as traced:
                try:
                    await call.run(provider, request)
                finally:
                    _traced_call(traced, call)
            call.timing.done(mapper.usage.output)
            count_tokens(writer.metrics, mapper)
            return call.step, mapper
        except ProviderError as exc:
            count_tokens(writer.metrics, mapper)
            if writer.metrics is not None:
                writer.metrics.provider_errors.labels(exc.kind).inc()
            shown = writer.seq != seq_before
            if shown or not exc.retryable or retry_no == policy.provider_retries:
                if not shown:
                    writer.discard()  # nothing of this step was shown: show only the error
                raise CallFailed(exc, mapper) from exc
            delay = _retry_delay(exc, retry_no, policy)
            log.info(
                "generation %s: %s; retry %d in %.1fs",
                writer.stream_id,
                exc.message,
                retry_no + 1,
                delay,
            )
            writer.discard()
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: the last retry raises")


def _retry_delay(exc: ProviderError, retry_no: int, policy: Policy) -> float:
    """The provider's ``retry-after`` if it gave one, else exponential backoff; at most
    ``retry_max_s``."""
    delay = exc.retry_after
    if delay is None:
        delay = policy.retry_base_s * 2**retry_no
    return min(delay, policy.retry_max_s)


def _call_attributes(request: dict[str, Any]) -> dict[str, Any]:
    """A model call's span attributes known before it (OpenTelemetry GenAI semantic
    conventions)."""
    provider = str(request.get("provider") or "anthropic")
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,
        "gen_ai.request.model": str(request.get("model") or ""),
    }


def _traced_call(span: Any, call: _Call) -> None:
    """What a model call's span learns at its end: the model that answered, the tokens
    in and out, why it stopped, and when its first token came."""
    if not tracing.traces.on:
        return
    mapper = call.mapper
    usage = mapper.usage
    if mapper.model:
        span.set_attribute("gen_ai.response.model", mapper.model)
    span.set_attribute("gen_ai.usage.input_tokens", usage.input)
    span.set_attribute("gen_ai.usage.output_tokens", usage.output)
    if mapper.stop_reason or mapper.finished:
        reason = mapper.stop_reason or mapper.finish_reason
        span.set_attribute("gen_ai.response.finish_reasons", [reason])
    if call.first_ns is not None:
        span.set_attribute("gen_ai.server.time_to_first_token", (call.first_ns - call.at_ns) / 1e9)
        span.add_event("gen_ai.first_token", timestamp=call.first_ns)


def count_tokens(metrics: WorkerMetrics | None, mapper: EventMapper) -> None:
    if metrics is not None and mapper.started:
        usage = mapper.usage
        metrics.tokens.labels("input").inc(usage.input)
        metrics.tokens.labels("output").inc(usage.output)


def _shown(
    events: list[dict[str, Any]], started: bool, restarts: bool = False
) -> list[dict[str, Any]]:
    """The mapper's events this step shows: not the step's ending (the loop writes it), not
    a second ``start``; the ``start-step`` of a call made again after a restarted step
    says so (``RESTARTED_STEP``)."""
    return [
        RESTARTED_STEP if restarts and e["type"] == "start-step" else e
        for e in events
        if e["type"] not in _HELD_BACK and not (started and e["type"] == "start")
    ]


@dataclass
class _Call:
    """One model call, its events merged and appended as they come."""

    writer: StreamWriter
    policy: Policy
    mapper: EventMapper
    started: bool
    timing: CallTiming
    seam: Seam | None = None
    restarts: bool = False
    """The call makes a restarted step's call again (``worker.continuation``)."""
    step: Step = field(default_factory=Step)
    held: list[dict[str, Any]] = field(default_factory=list)
    """The events that end a part wait for the next ones: the step's last are then still
    pending at the call's end, for the append that says its output is whole."""
    at_ns: int = field(default_factory=time.time_ns)
    first_ns: int | None = None
    """When the call's first output (a token, a tool call) came: its time to first token."""
    gives_points: bool = False
    """The provider gives resume points (``ResumePoint``)."""
    resumable: bool = True
    """What is pending ends exactly where the provider's last resume point is (or the
    provider gives none): a flush now writes that point with the output it follows."""

    def take(self, event: ModelEvent) -> None:
        if isinstance(event, Shown):
            self.mapper.feed(event.event)  # the lost attempt showed its output: only catch up
            return
        if isinstance(event, ResumePoint):
            self._resume_point(event.meta)
            return
        pending = len(self.writer.pending)
        out = _shown(self.mapper.feed(event), self.started, self.restarts)
        if self.seam is not None:
            out = self.seam.apply(out)
        self.step.events += [e for e in out if e["type"] not in ("start", "start-step")]
        if self.first_ns is None and self.step.events:
            self.first_ns = time.time_ns()
            self.timing.output()
        if out:
            self.writer.add(self.held)
            self.held = out if isinstance(event, PartEnd) else []
            self.writer.add([] if self.held else out)
        if self.mapper.finished:
            self.writer.add(self.held)
        if self.gives_points and len(self.writer.pending) != pending:
            self.resumable = False  # its point comes with the rest of its provider event

    def _resume_point(self, meta: dict[str, str]) -> None:
        """Note the provider's resume point for the next append once everything before it,
        and nothing after it, is pending or written (the output of a part's end is held
        back, see ``held``); while output past the last point is pending, no merge window
        flushes it: the next point comes with the rest of its provider event."""
        self.gives_points = True
        if not self.held:
            self.writer.note_meta(meta)
            self.resumable = True

    async def run(self, provider: Provider, request: dict[str, Any]) -> None:
        queue: asyncio.Queue[Any] = asyncio.Queue(self.policy.queue_size)
        async with provider.stream(request) as events:
            task = asyncio.create_task(_pump(events, queue), name=f"model-{self.writer.stream_id}")
            try:
                while True:
                    deadline = self.writer.deadline(self.policy.merge_s)
                    if not self.resumable:
                        deadline = None  # the point's own event comes next
                    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                    try:
                        async with asyncio.timeout(timeout):
                            item = await queue.get()
                    except TimeoutError:
                        await self.writer.flush()
                        continue
                    if item is _END:
                        break
                    if isinstance(item, ProviderError):
                        raise item
                    self.take(item)
                    if self.mapper.finished:
                        return
                    if self.policy.merge_s <= 0 and self.resumable:
                        await self.writer.flush()
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                # Closed here, before the provider closes its response: a generator left
                # suspended would be finalized by whichever thread's collection finds it.
                aclose = getattr(events, "aclose", None)
                if aclose is not None:
                    await aclose()
        # The model's stream ended before its end: never leave the stream open.
        raise ProviderError(
            "the model stream ended before message_stop", retryable=True, kind="incomplete"
        )


async def _pump(events: AsyncIterator[ModelEvent], queue: asyncio.Queue[Any]) -> None:
    try:
        async for raw in events:
            await queue.put(raw)
        await queue.put(_END)
    except ProviderError as exc:
        await queue.put(exc)
    except Exception as exc:  # a provider bug: report it, do not vanish
        message = f"model call failed: {type(exc).__name__}: {exc}"
        await queue.put(ProviderError(message, retryable=False))


__all__ = ["CallFailed", "Policy", "call_model", "count_tokens"]
