"""Traces (``broadcaster/core/tracing.py``): W3C ids with or without the SDK, the no-op
path, the SDK path's parents (against the SDK's in-memory exporter), the log lines'
trace id. (That a process without ``OTEL_*`` set never loads the SDK, which takes new
interpreters, is in tests/integration/test_tracing.py.)"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from broadcaster.core import tracing
from broadcaster.core.logconfig import JsonFormatter, TextFormatter, _StreamId, current_trace
from broadcaster.generations.lifecycle import Claim
from worker.attempt import _trace_claim

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def test_a_valid_traceparent_is_kept_and_a_bad_one_ignored() -> None:
    assert tracing.parse(PARENT) == PARENT
    assert tracing.parse(" " + PARENT.upper() + " ") == PARENT
    assert tracing.parse(f"01-{TRACE}-00f067aa0ba902b7-01-more") == PARENT  # a later version
    for bad in (
        None,
        "",
        "garbage",
        f"00-{TRACE}-00f067aa0ba902b7-01-more",  # version 00 has nothing after its flags
        f"ff-{TRACE}-00f067aa0ba902b7-01",  # version ff is invalid
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"00-{TRACE}-00f067aa0ba902b-01",  # short span id
        f"00-{TRACE[:-1]}g-00f067aa0ba902b7-01",
    ):
        assert tracing.parse(bad) is None, bad


def test_a_child_keeps_the_trace_and_flags_with_a_new_span_id() -> None:
    kid = tracing.child(PARENT)
    assert tracing.parse(kid) == kid
    assert kid[:36] == PARENT[:36] and kid[-3:] == "-01" and kid[36:52] != PARENT[36:52]
    unsampled = PARENT[:-2] + "00"
    assert tracing.child(unsampled).endswith("-00")
    fresh = tracing.child(None)
    assert tracing.parse(fresh) == fresh and fresh[3:35] != TRACE
    assert tracing.trace_id(PARENT) == TRACE


def test_the_stored_request_s_traceparent_is_read_and_checked() -> None:
    assert tracing.of_request(json.dumps({"prompt": "hi", "traceparent": PARENT})) == PARENT
    assert tracing.of_request(json.dumps({"traceparent": "nope"})) is None
    assert tracing.of_request(json.dumps({"traceparent": 7})) is None
    assert tracing.of_request(b'{"prompt": "hi"}') is None
    assert tracing.of_request("not json") is None
    assert tracing.of_request(None) is None


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "false"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
    ],
)
def test_traces_are_wanted_only_with_an_otlp_endpoint(env: dict[str, str], wanted: bool) -> None:
    assert tracing.wanted(env) is wanted


def test_with_traces_off_every_span_call_is_the_shared_no_op() -> None:
    assert not tracing.traces.on
    with tracing.span("x", {"a": 1}, parent=PARENT) as sp:
        assert sp is tracing.NO_SPAN
        sp.set_attribute("b", 2)
        sp.add_event("e", {"c": 3}, timestamp=1)
    tracing.mark("y", 0, {"a": 1}, parent=PARENT, event="z")  # records nothing, raises nothing
    with tracing.server_span("POST /v1/x", PARENT, {}) as given:
        assert given[:36] == PARENT[:36] and given != PARENT
    with tracing.server_span("POST /v1/x", None, {}) as given:
        assert tracing.parse(given) == given


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """The SDK on, its spans kept in memory; this process's state restored after."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    saved = (tracing.traces.on, tracing.traces.provider, tracing.traces.tracer)
    tracing.traces.on, tracing.traces.provider = True, provider
    tracing.traces.tracer = provider.get_tracer("test")
    try:
        yield memory
    finally:
        tracing.traces.on, tracing.traces.provider, tracing.traces.tracer = saved


def test_spans_continue_the_stored_trace_under_the_right_parents(
    exported: InMemorySpanExporter,
) -> None:
    with tracing.server_span("POST /v1/generations", PARENT, {"http.route": "r"}) as request:
        assert request[:36] == PARENT[:36] and request.endswith("-01")
    with tracing.span("generation", {"g": "1"}, parent=request) as run:
        run.set_attribute("broadcaster.outcome", "completed")
        with tracing.span("chat m", kind="CLIENT"):
            pass
        tracing.mark("takeover", 1_000, {"a": 2}, event="taken_over")
    tracing.mark("queue.wait", 500, parent=request, end_ns=900)
    spans = {s.name: s for s in exported.get_finished_spans()}
    assert set(spans) == {"POST /v1/generations", "generation", "chat m", "takeover", "queue.wait"}
    assert {f"{s.context.trace_id:032x}" for s in spans.values()} == {TRACE}
    req = spans["POST /v1/generations"]
    assert f"{req.parent.span_id:016x}" == PARENT[36:52] and req.kind.name == "SERVER"
    assert f"{req.context.span_id:016x}" == request[36:52]
    assert spans["generation"].parent.span_id == req.context.span_id
    assert spans["queue.wait"].parent.span_id == req.context.span_id
    assert (spans["queue.wait"].start_time, spans["queue.wait"].end_time) == (500, 900)
    assert spans["chat m"].parent.span_id == spans["generation"].context.span_id
    assert spans["chat m"].kind.name == "CLIENT"
    takeover = spans["takeover"]
    assert takeover.parent.span_id == spans["generation"].context.span_id
    assert [e.name for e in takeover.events] == ["taken_over"]
    assert spans["generation"].attributes["broadcaster.outcome"] == "completed"


def test_log_lines_carry_the_trace_id_in_both_formats() -> None:
    record = logging.LogRecord("w", logging.INFO, __file__, 1, "hello %s", ("x",), None)
    token = current_trace.set(PARENT)
    try:
        _StreamId().filter(record)
    finally:
        current_trace.reset(token)
    assert json.loads(JsonFormatter().format(record))["trace_id"] == TRACE
    assert f"[trace {TRACE}]" in TextFormatter().format(record)
    plain = logging.LogRecord("w", logging.INFO, __file__, 1, "hello", (), None)
    _StreamId().filter(plain)
    assert "trace_id" not in json.loads(JsonFormatter().format(plain))
    assert "[trace" not in TextFormatter().format(plain)


def test_the_text_log_of_a_line_without_trace_is_unchanged() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(_StreamId())
    handler.setFormatter(logging.Formatter("%(message)s %(trace_id)s"))
    logger = logging.getLogger("test-tracing-unit")
    logger.addHandler(handler)
    try:
        logger.warning("plain")
        token = current_trace.set(PARENT)
        try:
            logger.warning("traced")
        finally:
            current_trace.reset(token)
    finally:
        logger.removeHandler(handler)
    assert out.getvalue().splitlines() == ["plain None", f"traced {TRACE}"]


def _claimed(meta: dict[str, str], attempt: int, seq: int) -> None:
    token = current_trace.set(PARENT)
    try:
        _trace_claim("g1", meta, Claim(seq, attempt))
    finally:
        current_trace.reset(token)


def test_the_waits_before_a_claim_are_spans_with_their_real_times(
    exported: InMemorySpanExporter,
) -> None:
    """First claim: the queue wait since creation. After a person's decision: the
    approval wait (asked to decided), then the queue. A later attempt: a takeover since
    the lost worker's last append, under the new run's span."""
    ms = 1_700_000_000_000
    _claimed({"created_at": str(ms), "updated_at": str(ms)}, 1, 0)
    wait = json.dumps({"asked_ms": ms + 10, "approvals": [{"toolName": "delete"}]})
    _claimed({"created_at": str(ms), "updated_at": str(ms + 500), "wait": wait}, 1, 7)
    with tracing.span("generation", parent=PARENT):
        _claimed({"created_at": str(ms), "updated_at": str(ms + 900)}, 2, 9)
    spans = exported.get_finished_spans()
    names = [s.name for s in spans]
    assert names == ["queue.wait", "approval.wait", "queue.wait", "takeover", "generation"]
    first, approval, second, takeover, generation = spans
    assert first.start_time == ms * 1_000_000 and first.parent.span_id == int(PARENT[36:52], 16)
    assert first.attributes["broadcaster.attempt"] == 1
    assert (approval.start_time, approval.end_time) == ((ms + 10) * 10**6, (ms + 500) * 10**6)
    assert approval.attributes["gen_ai.tool.name"] == "delete"
    assert second.start_time == (ms + 500) * 1_000_000
    assert takeover.start_time == (ms + 900) * 1_000_000
    assert takeover.parent.span_id == generation.context.span_id
    assert takeover.attributes["broadcaster.resumed_from_seq"] == 9
    assert [e.name for e in takeover.events] == ["taken_over"]
