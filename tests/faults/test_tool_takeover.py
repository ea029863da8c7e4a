"""A worker killed (``kill -9``) in the middle of a generation that runs tools: another
worker takes it over after the lease and never runs again a tool whose output is in the
stream (docs/reliability.md, "Takeover of a generation that runs tools").

Real processes on 127.0.0.1 (``tests/support/faults.py``'s ``Cluster``): one Redis, two
front-ends, workers on the real ``anthropic`` SDK against the local fake Anthropic
server, with the tools of ``tests/support/worker_tools.py`` registered. Every tool run is
recorded in a file by the worker that runs it, so the count survives the kill. Viewers
that reconnect as EventSource does check that every event arrived exactly once.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from broadcaster.core.events import Usage
from broadcaster.generations.content import fold
from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    message,
    stall,
    text,
    text_reply,
    tool_use,
)
from tests.support.faults import (
    Cluster,
    Received,
    Viewer,
    create_generation,
    owned_by,
    poll,
    report,
    stored_events,
    stream_meta,
    verdict,
)
from tests.support.polling import until
from tests.support.procs import tool_worker_env
from tests.support.prompt_cache import breakpoints, without_breakpoints
from tests.support.worker_tools import runs
from worker.transcript import latest_attempt

pytestmark = pytest.mark.anyio


def data(events: list[Received]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in events]


async def run_viewers(client: httpx.AsyncClient, viewers: list[Viewer], seconds: float) -> None:
    with anyio.fail_after(seconds):
        async with anyio.create_task_group() as tg:
            for v in viewers:
                tg.start_soon(v.run, client)


async def _ran(path: Path, tool: str, what: str, n: int) -> bool:
    return runs(path, tool, what) >= n


async def _seen(r: Any, gid: str, kind: str, value: str) -> bool:
    return any(e.type == kind and value in e.data for e in stored_events(r, gid))


async def test_a_worker_killed_while_a_tool_runs_reruns_only_that_tool(tmp_path: Path) -> None:
    """The model called two tools; ``add`` ran and its output is in the stream; the worker
    is killed while ``gate`` runs. The new worker runs ``gate`` only, then the next step:
    no ``data-retry`` (nothing shown is discarded), one ``start``, one ``finish``."""
    runs_file = tmp_path / "runs.jsonl"
    with FakeAnthropicServer() as model, Cluster(tmp_path, workers_n=0) as cluster:
        cluster.worker_env = tool_worker_env(model.base_url, tmp_path)
        victim = cluster.add_worker()
        model.enqueue(
            message(
                [
                    text("Two tools."),
                    tool_use("toolu_add", "add", ['{"a": 1, "b": 2}']),
                    tool_use("toolu_gate", "gate", ["{}"]),
                ],
                stop_reason="tool_use",
                input_tokens=10,
                output_tokens=6,
            )
        )
        model.enqueue(text_reply(["Done: ", "3."], input_tokens=30, output_tokens=2))
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
            gid = await create_generation(client, cluster.frontends[0].url, "add, then wait")
            viewers = [Viewer(cluster.urls, gid) for _ in range(4)]
            r = cluster.client()
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_viewers, client, viewers, 60)
                await poll(lambda: _ran(runs_file, "gate", "start", 1), "the gate tool to run")
                assert await _seen(r, gid, "tool-output-available", "toolu_add")
                victim.stop(signal.SIGKILL)
                killed_at = time.monotonic()
                (tmp_path / "gate").touch()
                rescuer = cluster.add_worker()
                await until(lambda: owned_by(r, gid, rescuer), "the takeover", 30)
                taken_over_s = time.monotonic() - killed_at
            stored = stored_events(r, gid)
            meta = stream_meta(r, gid)
            r.close()
    verdicts = [verdict(v, stored) for v in viewers]
    report("tool takeover (killed in a tool)", verdicts, takeover_s=f"{taken_over_s:.2f}")
    for v in verdicts:
        assert v.outcome == "done" and v.exact, v
    assert runs(runs_file, "add", "start") == runs(runs_file, "add", "end") == 1
    assert runs(runs_file, "gate", "start") == 2  # the killed run, and the rescuer's
    assert runs(runs_file, "gate", "end") == 1
    events = data(stored)
    types = [e["type"] for e in events]
    assert "data-retry" not in types
    assert types.count("start") == types.count("finish") == 1
    outputs = [e for e in events if e["type"] == "tool-output-available"]
    assert outputs == [
        {"type": "tool-output-available", "toolCallId": "toolu_add", "output": {"sum": 3}},
        {"type": "tool-output-available", "toolCallId": "toolu_gate", "output": {"opened": True}},
    ]
    k = types.index("tool-output-available")
    assert types[k:] == [
        "tool-output-available",
        "tool-output-available",
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    assert events[-1]["messageMetadata"]["usage"] == Usage(40, 8).ai_sdk()
    assert meta["attempt"] == "2" and meta["status"] == "completed"
    # The second step was sent both results, rebuilt from the stream by the rescuer.
    results = model.requests[-1].body["messages"][-1]["content"]
    assert [(b["tool_use_id"], b["content"]) for b in results] == [
        ("toolu_add", '{"sum": 3}'),
        ("toolu_gate", '{"opened": true}'),
    ]
    assert model.request_count == 2


async def test_a_worker_killed_mid_model_output_does_not_run_the_tool_again(
    tmp_path: Path,
) -> None:
    """Step 1 ran ``add``; the worker is killed while step 2's text streams. The new worker
    appends ``data-continued`` and asks the model to go on from step 2's partial text (the
    tool not run again, step 1 not shown again); the rest streams into the same part."""
    runs_file = tmp_path / "runs.jsonl"
    with FakeAnthropicServer() as model, Cluster(tmp_path, workers_n=0) as cluster:
        cluster.worker_env = tool_worker_env(model.base_url, tmp_path)
        victim = cluster.add_worker()
        call = message([tool_use("toolu_add", "add", ['{"a": 2, "b": 2}'])], stop_reason="tool_use")
        model.enqueue(call)
        model.enqueue([*text_reply(["cut off ", "here"])[:3], stall()])
        model.enqueue(text_reply(["The sum ", "is 4."]))
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
            gid = await create_generation(client, cluster.frontends[0].url, "add 2 and 2")
            viewers = [Viewer(cluster.urls, gid) for _ in range(4)]
            r = cluster.client()
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_viewers, client, viewers, 60)
                await poll(lambda: _seen(r, gid, "text-delta", "cut off"), "step 2's text")
                victim.stop(signal.SIGKILL)
                rescuer = cluster.add_worker()
                await until(lambda: owned_by(r, gid, rescuer), "the takeover", 30)
            stored = stored_events(r, gid)
            meta = stream_meta(r, gid)
            r.close()
    verdicts = [verdict(v, stored) for v in viewers]
    report("tool takeover (killed mid-model)", verdicts)
    for v in verdicts:
        assert v.outcome == "done" and v.exact, v
    assert runs(runs_file, "add", "start") == runs(runs_file, "add", "end") == 1
    events = data(stored)
    types = [e["type"] for e in events]
    assert "data-retry" not in types
    assert latest_attempt(events) == events  # one attempt's events: nothing shown twice
    assert types == [
        "start",
        "start-step",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-available",
        "tool-output-available",
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
        "data-continued",
        "text-delta",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    assert [b["type"] for b in fold(events)] == ["tool_use", "text"]
    assert fold(events)[1]["text"] == "cut off The sum is 4."
    assert meta["attempt"] == "2" and meta["status"] == "completed"
    # Step 2 was continued: the lost worker's messages, its partial turn, the ask to go on.
    assert model.request_count == 3
    sent = model.requests[2].body["messages"]
    # The same prefix (its breakpoints aside): the continuation reads what the cut call
    # wrote; its own breakpoints are on the partial turn and the ask to go on.
    assert without_breakpoints(sent[:-2]) == without_breakpoints(model.requests[1].body["messages"])
    assert [b for b in breakpoints(model.requests[2].body) if b.startswith("messages")] == [
        f"messages[{len(sent) - 2}].content[0]",
        f"messages[{len(sent) - 1}].content[0]",
    ]
    partial = {"role": "assistant", "content": [{"type": "text", "text": "cut off "}]}
    assert without_breakpoints(sent[-2]) == partial
    assert sent[-1]["role"] == "user" and "Continue" in sent[-1]["content"][0]["text"]
