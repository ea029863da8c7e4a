"""One trace per generation across every process (docs/observability.md, "Traces").

Real processes on 127.0.0.1: nginx (deploy/nginx.conf) in front of two front-ends, workers
on the real ``anthropic`` SDK against the local fake Anthropic server with the tools of
``tests/support/worker_tools.py``, every process exporting its spans over OTLP/HTTP to the
test's own receiver (``tests/support/otlp.py``). A generation is requested through nginx
with the client's ``traceparent``; its first step runs a tool, and the worker is killed
(SIGKILL) in the middle of the second step's text; another worker takes it over. One
trace holds it all, each span under the right parent.

And, each in a new interpreter: without ``OTEL_EXPORTER_OTLP_ENDPOINT`` no process loads
the OpenTelemetry SDK; with it, the exporter is set up, or one line says what to install.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from broadcaster.core import tracing
from tests.support.fake_anthropic import FakeAnthropicServer, message, stall, text_reply, tool_use
from tests.support.faults import Cluster, Viewer, owned_by, stored_events, stream_meta
from tests.support.nginx import Nginx, find_nginx
from tests.support.otlp import OtlpReceiver, Span
from tests.support.polling import poll, until
from tests.support.ports import free_port
from tests.support.procs import ROOT, Deployment, tool_worker_env

pytestmark = pytest.mark.anyio

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SERVER = 2
CLIENT = 3


def named(spans: list[Span], name: str, service: str | None = None) -> list[Span]:
    return [s for s in spans if s.name == name and (service is None or s.service == service)]


def one(spans: list[Span], name: str, service: str | None = None) -> Span:
    found = named(spans, name, service)
    assert len(found) == 1, (name, service, [(s.name, s.service) for s in spans])
    return found[0]


async def start_traced(client: httpx.AsyncClient, base: str, prompt: str) -> httpx.Response:
    """A generation started with the client's ``traceparent``: its 202."""
    resp = await client.post(
        f"{base}/v1/generations",
        json={"prompt": prompt},
        headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
    )
    assert resp.status_code == 202, resp.text
    return resp


async def test_one_trace_across_nginx_the_front_end_a_killed_worker_and_its_successor(
    tmp_path: Path,
) -> None:
    with (
        OtlpReceiver() as otlp,
        FakeAnthropicServer() as model,
        Cluster(tmp_path, frontends_n=0, workers_n=0) as cluster,
    ):
        cluster.frontend_env = {**otlp.env("broadcaster"), "BROADCASTER_LOG_FORMAT": "json"}
        frontends = [cluster.add_frontend(), cluster.add_frontend()]
        nginx = Nginx(
            find_nginx(), tmp_path / "nginx", free_port(), [f.port or 0 for f in frontends]
        )
        nginx.start()
        try:
            worker_env = {**tool_worker_env(model.base_url, tmp_path), "WORKER_LOG_FORMAT": "json"}
            cluster.worker_env = {**worker_env, **otlp.env("worker-1")}
            victim = cluster.add_worker()
            model.enqueue(
                message(
                    [tool_use("toolu_add", "add", ['{"a": 2, "b": 2}'])],
                    stop_reason="tool_use",
                    input_tokens=11,
                    output_tokens=5,
                )
            )
            model.enqueue([*text_reply(["cut off ", "here"])[:3], stall()])
            model.enqueue(text_reply(["The sum ", "is 4."], input_tokens=30, output_tokens=4))
            async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
                resp = await start_traced(client, nginx.url, "add 2 and 2")
                gid = resp.json()["id"]
                viewer = Viewer([nginx.url], gid)
                r = cluster.client()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(viewer.run, client)
                    # The victim's tool run is exported before it is killed mid-text.
                    await otlp.wait_for(
                        lambda s: bool(named(s, "execute_tool add", "worker-1")), "tool span", 30
                    )
                    await poll(lambda: _seen(r, gid, "cut off"), "the second step's text", 30)
                    victim.stop(signal.SIGKILL)
                    cluster.worker_env = {**worker_env, **otlp.env("worker-2")}
                    rescuer = cluster.add_worker()
                    await until(lambda: owned_by(r, gid, rescuer), "the takeover", 30)
                meta = stream_meta(r, gid)
                r.close()
            spans = await otlp.wait_for(_complete, "the rescuer's whole run", 30)
        finally:
            nginx.stop()
        worker_logs = victim.log() + rescuer.log()

    assert meta["status"] == "completed" and meta["attempt"] == "2"
    assert viewer.outcome == "done"

    # The response names the trace: the client's, continued by the request's span.
    request = one(spans, "POST /v1/generations", "broadcaster")
    assert resp.headers["x-trace-id"] == CLIENT_TRACE
    assert resp.headers["traceparent"] == f"00-{CLIENT_TRACE}-{request.span_id}-01"

    ours = [s for s in spans if s.trace_id == CLIENT_TRACE]
    assert {s.service for s in ours} == {"broadcaster", "worker-1", "worker-2"}
    assert request.parent_id == CLIENT_SPAN and request.kind == SERVER
    assert request.attributes["http.response.status_code"] == 202

    # Each worker's run continues the request; the waits and the first write too.
    runs = {s.service: s for s in named(ours, "generation")}
    assert set(runs) >= {"worker-2"}  # the victim's run died with it, unexported
    rescued = runs["worker-2"]
    assert rescued.parent_id == request.span_id
    assert rescued.attributes["broadcaster.generation.id"] == gid
    assert rescued.attributes["broadcaster.outcome"] == "completed"
    assert [e.name for e in rescued.events] == ["end"]
    queued = one(ours, "queue.wait", "worker-1")
    assert queued.parent_id == request.span_id and queued.attributes["broadcaster.attempt"] == 1
    takeover = one(ours, "takeover", "worker-2")
    assert takeover.parent_id == rescued.span_id
    assert takeover.attributes["broadcaster.attempt"] == 2
    assert takeover.attributes["broadcaster.resumed_from_seq"] > 0
    assert [e.name for e in takeover.events] == ["taken_over"]

    # The victim's first model call and its tool run, under its run (not exported, as it
    # was killed: the parent is its run's span id, the same for both).
    calls = named(ours, "chat claude-sonnet-4-5")
    first = [c for c in calls if c.service == "worker-1"]
    assert first and first[0].kind == CLIENT
    attrs = first[0].attributes
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == attrs["gen_ai.system"] == "anthropic"
    assert attrs["gen_ai.request.model"] == "claude-sonnet-4-5"
    assert attrs["gen_ai.response.model"]
    assert attrs["gen_ai.usage.input_tokens"] == 11 and attrs["gen_ai.usage.output_tokens"] == 5
    assert attrs["gen_ai.response.finish_reasons"] == ["tool_use"]
    assert attrs["gen_ai.server.time_to_first_token"] >= 0
    assert [e.name for e in first[0].events] == ["gen_ai.first_token"]
    tool = one(ours, "execute_tool add", "worker-1")
    assert tool.parent_id == first[0].parent_id  # both under the victim's run
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.call.id"] == "toolu_add"
    last = [c for c in calls if c.service == "worker-2"]
    assert last and all(c.parent_id == rescued.span_id for c in last)
    assert last[-1].attributes["gen_ai.usage.output_tokens"] == 4
    assert last[-1].attributes["gen_ai.response.finish_reasons"] == ["end_turn"]
    # In order: the request, the queue, the first call, the tool, the takeover, the end.
    assert request.start_ns <= queued.end_ns <= first[0].start_ns < tool.start_ns
    assert tool.end_ns <= takeover.end_ns <= last[-1].start_ns <= rescued.end_ns

    # The front-end's first live write to a viewer, once, on the generation's trace.
    write = one(ours, "fanout.first_write", "broadcaster")
    assert write.parent_id == request.span_id
    assert write.attributes["broadcaster.stream.id"] == gid
    assert [e.name for e in write.events] == ["first_write"]

    # And the logs: every line of the generation carries its trace id.
    lines = [json.loads(x) for x in worker_logs.splitlines() if x.startswith("{")]
    about = [x for x in lines if x.get("stream_id") == gid]
    assert about and all(x.get("trace_id") == CLIENT_TRACE for x in about), about


def _complete(spans: list[Span]) -> bool:
    return any(s.name == "generation" and s.service == "worker-2" for s in spans) and any(
        s.name == "fanout.first_write" for s in spans
    )


async def _seen(r: object, gid: str, text: str) -> bool:
    return any(text in e.data for e in stored_events(r, gid))  # type: ignore[arg-type]


async def test_without_an_exporter_the_trace_id_still_ties_the_response_to_the_logs(
    deployment: Deployment,
) -> None:
    """No ``OTEL_*`` set (the session's deployment): no span is exported, but a traced
    request still continues the client's trace id (or starts one, for a missing or bad
    header, never refusing it), names it in its response and keeps it with the job, so the
    worker's log lines of the generation carry it."""
    base = deployment.frontends[0].url
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await start_traced(client, base, "hello")
        gid = resp.json()["id"]
        assert resp.headers["x-trace-id"] == CLIENT_TRACE
        given = resp.headers["traceparent"]
        assert given.startswith(f"00-{CLIENT_TRACE}-") and given.endswith("-01")
        assert given[36:52] != CLIENT_SPAN  # the request's own span id
        bad = await client.post(
            f"{base}/v1/streams/trace-{gid}/events",
            json={"type": "data-x", "data": {}},
            headers={"traceparent": f"00-{'0' * 32}-{CLIENT_SPAN}-01"},
        )
        assert bad.status_code == 201, bad.text
        fresh = bad.headers["traceparent"]
        assert fresh[3:35] == bad.headers["x-trace-id"] != "0" * 32
        status = await client.get(f"{base}/v1/generations/{gid}")
        assert "traceparent" not in status.headers and "x-trace-id" not in status.headers

        async def finished() -> bool:
            got = await client.get(f"{base}/v1/generations/{gid}")
            return bool(got.json()["status"] == "completed")

        await poll(finished, "the generation to complete", 30)
    lines = [x for x in deployment.worker.log().splitlines() if f"[stream {gid}]" in x]
    assert lines and all(f"[trace {CLIENT_TRACE}]" in x for x in lines), lines


# --- which processes load the SDK (new interpreters, so not among the unit tests) ---


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
    )


SDK_LOADED = (
    "print(sorted(m for m in sys.modules if m.startswith("
    "('opentelemetry.sdk.trace', 'opentelemetry.exporter'))))\n"
)


def test_without_otel_variables_no_process_loads_the_sdk() -> None:
    """The front-end's app, the worker and the command line imported, and ``setup``
    called, without ``OTEL_EXPORTER_OTLP_ENDPOINT``: neither the SDK's tracing nor the
    exporter is loaded (redis-py may load the SDK's metrics on its own; not ours)."""
    code = (
        "import sys\n"
        "import broadcaster.cli, broadcaster.http.app, worker.cli, worker.daemon\n"
        "from broadcaster.core import tracing\n"
        "assert tracing.setup('x') is False\n" + SDK_LOADED
    )
    assert _python(code, {}).stdout.strip() == "[]"


def test_with_the_variable_set_the_exporter_is_set_up() -> None:
    code = (
        "import sys\n"
        "from broadcaster.core import tracing\n"
        "assert tracing.setup('x') is True\n" + SDK_LOADED
    )
    out = _python(code, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}).stdout
    assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" in out


def test_with_the_variable_set_but_no_sdk_one_line_says_what_to_install() -> None:
    code = (
        "import sys, logging\n"
        "sys.modules['opentelemetry.sdk.trace'] = None  # as if the extra were not installed\n"
        "logging.basicConfig(level='INFO', format='%(levelname)s %(message)s')\n"
        "from broadcaster.core import tracing\n"
        "assert tracing.setup('x') is False and not tracing.traces.on\n"
        "with tracing.span('y') as s: assert s is tracing.NO_SPAN\n"
    )
    run = _python(code, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("WARNING ") and tracing.INSTALL_HINT in lines[0]
