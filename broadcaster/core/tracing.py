"""Traces: one W3C trace per generation, across the front-end and the workers, exported
with the OpenTelemetry SDK over OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set.

A generation's ``traceparent`` is kept with its job (the request stored in Redis), so
every process that touches it continues the same trace; its trace id is on every log line
about it (``logconfig.current_trace``). Without the SDK configured, ids are still made
(cheap random W3C ids, no SDK), so a response's headers and the logs tie together; no
span is recorded then, and each span call below returns one shared object that does
nothing. The SDK is imported by ``setup`` only, and only when the variable is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from broadcaster.core import keys
from broadcaster.core.logconfig import current_trace

log = logging.getLogger("broadcaster.tracing")

INSTALL_HINT = "pip install 'llm-stream-broadcaster[otel]'"
_TRACEPARENT = re.compile(r"\A([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\Z")


class _Traces:
    """This process's exporter, once ``setup`` made one."""

    __slots__ = ("on", "provider", "tracer")

    def __init__(self) -> None:
        self.on = False
        """Whether spans are recorded and exported: the one check of the no-op path."""
        self.provider: Any = None
        self.tracer: Any = None


traces = _Traces()
_tasks: set[asyncio.Task[None]] = set()
_MAX_TASKS = 64
"""Most first-write lookups in flight; more are dropped (a trace loses an event)."""
_reported: OrderedDict[str, None] = OrderedDict()
_MAX_REPORTED = 10_000


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard ``OTEL_*`` variables ask for traces over OTLP."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() in ("none", ""):
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def setup(service: str) -> bool:
    """Start exporting spans, named ``OTEL_SERVICE_NAME`` or ``service``, if ``wanted``.
    Without the ``otel`` extra installed, one log line says what to install, and the
    process goes on untraced. Called once per process; True when traces are on."""
    if traces.on or not wanted():
        return traces.on
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed"
            " (%s); going on without traces",
            INSTALL_HINT,
        )
        return False
    name = os.environ.get("OTEL_SERVICE_NAME") or service
    # Sampler (OTEL_TRACES_SAMPLER), batching (OTEL_BSP_*) and endpoint, headers and
    # timeout (OTEL_EXPORTER_OTLP_*) are read from the environment by the SDK itself.
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    traces.provider, traces.tracer = provider, provider.get_tracer("broadcaster")
    traces.on = True
    log.info("exporting traces over OTLP as service %s", name)
    return True


async def close() -> None:
    """Await the first-write lookups in flight and send the spans not sent yet."""
    if _tasks:
        await asyncio.gather(*_tasks, return_exceptions=True)
    if traces.on:
        traces.on = False
        # A collector that is down holds this up to the flush's 3 s, not its retries'.
        await asyncio.to_thread(traces.provider.force_flush, 3000)
        await asyncio.to_thread(traces.provider.shutdown)


# --- ids, with or without the SDK ---


def parse(header: str | None) -> str | None:
    """``header`` if it is a valid W3C ``traceparent`` (version 00, non-zero ids), else
    None: a bad one is ignored (a new trace starts), never refused."""
    if not header:
        return None
    text = header.strip().lower()
    m = _TRACEPARENT.fullmatch(text[:55])
    if m is None or m[1] == "ff" or m[2] == "0" * 32 or m[3] == "0" * 16:
        return None
    if len(text) > 55 and (m[1] == "00" or text[55] != "-"):
        return None  # version 00 has nothing more; a later one, only after a dash
    return f"00-{m[2]}-{m[3]}-{m[4]}"


def trace_id(traceparent: str) -> str:
    return traceparent[3:35]


def child(parent: str | None) -> str:
    """A traceparent for a new span: ``parent``'s trace and flags (or a new trace,
    sampled), a new span id. Costs two random draws; no SDK."""
    span_id = secrets.token_hex(8)
    if parent is None:
        return f"00-{secrets.token_hex(16)}-{span_id}-01"
    return f"{parent[:35]}-{span_id}-{parent[53:55]}"


# --- spans: shared do-nothing objects unless ``traces.on`` ---


class _NoSpan:
    """What a span call gives when traces are off: every method does nothing."""

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        return None

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, **kw: Any) -> None:
        return None


NO_SPAN = _NoSpan()


def _context(traceparent: str | None) -> Any:
    if traceparent is None:
        return None  # the current span's, if any
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    parent: str | None = None,
    kind: str = "INTERNAL",
    start_ns: int | None = None,
) -> Any:
    """A context manager recording span ``name`` around its block, as the current span,
    the child of ``parent`` (a traceparent) or else of the current span. It gives the
    span (``set_attribute``, ``add_event``)."""
    if not traces.on:
        return NO_SPAN
    from opentelemetry.trace import SpanKind

    return traces.tracer.start_as_current_span(
        name,
        context=_context(parent),
        kind=SpanKind[kind],
        attributes=attributes,
        start_time=start_ns,
    )


def mark(
    name: str,
    start_ns: int,
    attributes: Mapping[str, Any] | None = None,
    *,
    parent: str | None = None,
    end_ns: int | None = None,
    event: str | None = None,
) -> None:
    """A span that already happened (from ``start_ns`` to ``end_ns`` or now), with one
    ``event`` at its end if named: a wait measured after the fact."""
    if not traces.on:
        return
    sp = traces.tracer.start_span(
        name, context=_context(parent), attributes=attributes, start_time=start_ns
    )
    end = end_ns or time.time_ns()
    if event is not None:
        sp.add_event(event, attributes, timestamp=end)
    sp.end(end_time=end)


@contextlib.contextmanager
def server_span(name: str, incoming: str | None, attributes: Mapping[str, Any]) -> Iterator[str]:
    """A request's span (kind SERVER), the child of the client's ``incoming``
    traceparent; gives its own traceparent (what the response names, and what the
    request's job keeps). With traces off, a new span id in the same trace."""
    if not traces.on:
        yield child(incoming)
        return
    with span(name, attributes, parent=incoming, kind="SERVER") as sp:
        ctx = sp.get_span_context()
        flags = "01" if ctx.trace_flags.sampled else "00"
        yield f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{flags}"


def current() -> str:
    """The traceparent of what runs now (a request, a job), or a new one."""
    return current_trace.get() or child(None)


def of_request(raw: str | bytes | None) -> str | None:
    """The traceparent kept in a stored request (JSON), if any."""
    if not raw:
        return None
    with contextlib.suppress(ValueError, AttributeError):
        found = json.loads(raw).get("traceparent")
        return parse(found) if isinstance(found, str) else None
    return None


# --- the front-end's first write of a stream ---


def first_write(redis: Any, stream_id: str, run: tuple[Any, ...], appended_ms: bytes) -> None:
    """A front-end wrote a stream's first live run to its viewers: recorded once per stream
    on the generation's trace as span ``fanout.first_write``, from the append
    (``appended_ms``, Redis's clock) to now. Only when ``traces.on``; the trace lookup runs
    in a bounded task of its own (awaited by ``close``), so the fan-out is not held."""
    if stream_id in _reported or len(_tasks) >= _MAX_TASKS:
        return
    _reported[stream_id] = None
    if len(_reported) > _MAX_REPORTED:
        _reported.popitem(last=False)
    task = asyncio.get_running_loop().create_task(
        _first_write(
            redis, stream_id, run[0], run[1], appended_ms=appended_ms, at_ns=time.time_ns()
        )
    )
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _first_write(
    redis: Any, stream_id: str, first: int, last: int, *, appended_ms: bytes, at_ns: int
) -> None:
    try:
        request, updated, seq = await redis.hmget(
            keys.meta_key(stream_id), "request", "updated_at", "seq"
        )
    except Exception as exc:  # a lost event, never a lost delivery
        log.debug("first write of %s: no trace read (%s)", stream_id, exc)
        return
    parent = of_request(request)
    if parent is None:
        return
    attributes: dict[str, Any] = {"broadcaster.stream.id": stream_id, "broadcaster.seq": first}
    start = at_ns
    # The append's time came with the run; else the stream's last append time (Redis's
    # clock) is this run's while nothing came after.
    if appended_ms.isdigit() or (updated and seq and int(seq) == last):
        appended = int(appended_ms) if appended_ms.isdigit() else int(updated)
        start = min(at_ns, appended * 1_000_000)
        attributes["broadcaster.append_to_write_ms"] = round((at_ns - start) / 1e6, 3)
    mark("fanout.first_write", start, attributes, parent=parent, end_ns=at_ns, event="first_write")
