"""Deploys are not failures, and a generation has one owner at a time (docs/reliability.md,
"Deploys and ownership").

Real processes on 127.0.0.1 (``tests/support/faults.py``'s ``Cluster``): one Redis, two
front-ends, workers on the real ``anthropic`` SDK against the local fake Anthropic server
with the test tools registered (``tests/support/worker_tools.py``), or on the fake
provider. Viewers that reconnect as EventSource does check that every event arrived
exactly once.

* A rolling restart under a ten-step agent run: five times a new worker comes up and the
  old one is SIGTERMed. Each hands the generation back at its step's end; it completes,
  whole, with no step made twice, although ``WORKER_MAX_ATTEMPTS`` is 1 (hand-backs are
  no attempts).
* A real lost worker (``kill -9``) still counts: after a hand-back, one lost worker ends
  the generation when the budget is 1.
* A duplicate job of a live generation is dropped by the worker that reads it: no
  takeover, no ``data-retry``, the owner never fenced.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from broadcaster.core import keys
from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    gate,
    message,
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
    owner_pid,
    report,
    stored_events,
    stream_meta,
    verdict,
    wait_status,
)
from tests.support.polling import poll, until
from tests.support.procs import Proc, tool_worker_env
from tests.support.worker_tools import runs

pytestmark = pytest.mark.anyio

STEPS = 10
TOOL_STEP_TOKENS = 10
FINAL_TOKENS = 3


def agent_run(
    tag: str,
    chunk_delay: float,
    steps: int = STEPS,
    gates: dict[int, threading.Event] | None = None,
) -> list[Any]:
    """The model's replies for one agent run: ``steps`` steps that each say something
    and call ``add``, then a final answer. A step in ``gates`` stops after its third
    word until the test opens its gate: a worker is held there mid-step."""
    replies: list[Any] = []
    for i in range(steps):
        reply = message(
            [
                text([f"step {i} ", "looks ", "at ", "the ", "numbers. "]),
                tool_use(f"toolu_{tag}_{i}", "add", [json.dumps({"a": i, "b": 1})]),
            ],
            stop_reason="tool_use",
            output_tokens=TOOL_STEP_TOKENS,
            chunk_delay=chunk_delay,
        )
        if gates and i in gates:
            deltas = [
                k for k, f in enumerate(reply) if getattr(f, "event", "") == "content_block_delta"
            ]
            reply.insert(deltas[2] + 1, gate(gates[i]))
        replies.append(reply)
    replies.append(text_reply(["all ", "done."], output_tokens=FINAL_TOKENS))
    return replies


def data(events: list[Received]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in events]


async def run_viewers(client: httpx.AsyncClient, viewers: list[Viewer], seconds: float) -> None:
    with anyio.fail_after(seconds):
        async with anyio.create_task_group() as tg:
            for v in viewers:
                tg.start_soon(v.run, client)


def output_tokens(events: list[dict[str, Any]]) -> int:
    finish = events[-1]
    assert finish["type"] == "finish", finish
    return int(finish["messageMetadata"]["usage"]["outputTokens"])


async def test_a_rolling_restart_under_a_ten_step_agent_run(tmp_path: Path) -> None:
    with FakeAnthropicServer() as model, Cluster(tmp_path, workers_n=0) as cluster:
        cluster.worker_env = {
            **tool_worker_env(model.base_url, tmp_path),
            "WORKER_MAX_ATTEMPTS": "1",  # a single hand-back counted would end the run
            "WORKER_GRACE_SECONDS": "15",  # more than a step: each reaches its end
        }
        worker = await asyncio.to_thread(cluster.add_worker)
        fe = cluster.frontends[0].url
        r = cluster.client()
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
            # The uncut run: what the same run costs with no restart.
            for reply in agent_run("u", 0.0):
                model.enqueue(reply)
            uncut = await create_generation(client, fe, "add them up", max_steps=STEPS + 1)
            await wait_status(client, fe, uncut, {"completed"}, 60)
            uncut_calls = model.request_count
            # Steps 1, 3, 5, 7 and 9 wait mid-step for the test: each restart lands in
            # one, however slowly the machine starts the next worker.
            gates = {i: threading.Event() for i in range(1, STEPS, 2)}
            for reply in agent_run("c", 0.05, gates=gates):
                model.enqueue(reply)
            gid = await create_generation(client, fe, "add them up", max_steps=STEPS + 1)
            viewers = [Viewer(cluster.urls, gid) for _ in range(3)]
            handed: list[float] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_viewers, client, viewers, 240)
                for n, held in enumerate(gates):
                    # The next worker comes up while this one runs (as in a rolling deploy).
                    coming = asyncio.create_task(asyncio.to_thread(cluster.add_worker))
                    await until(lambda w=worker: owned_by(r, gid, w), f"restart {n}: owned", 30)
                    new = await coming
                    asked = uncut_calls + held + 1
                    await poll(lambda a=asked: _asked(model, a), f"restart {n}: step {held} held")
                    t0 = time.monotonic()
                    os.kill(worker.pid, signal.SIGTERM)
                    await poll(lambda w=worker: _logged(w, "handing back"), f"restart {n}: drains")
                    gates[held].set()  # the step goes on to its end, where it is handed back
                    code = await asyncio.to_thread(worker.popen.wait, 30)
                    handed.append(time.monotonic() - t0)
                    assert code == 0, worker.log()[-3000:]
                    assert "handed back at a step's end" in worker.log(), worker.log()[-3000:]
                    worker = new
                status = await wait_status(client, fe, gid, {"completed", "failed"}, 120)
            stored = stored_events(r, gid)
            meta = stream_meta(r, gid)
            uncut_events = data(stored_events(r, uncut))
            r.close()
        cut_calls = model.request_count - uncut_calls
    verdicts = [verdict(v, stored) for v in viewers]
    events = data(stored)
    cut_tokens, uncut_tokens = output_tokens(events), output_tokens(uncut_events)
    report(
        "rolling restart, 10-step agent run",
        verdicts,
        restarts=5,
        sigterm_to_exit_s="/".join(f"{s:.1f}" for s in handed),
        output_tokens=f"{cut_tokens} (uncut {uncut_tokens}, {cut_tokens / uncut_tokens:.2f}x)",
        model_calls=f"{cut_calls} (uncut {uncut_calls})",
    )
    assert status["status"] == "completed", status
    for v in verdicts:
        assert v.outcome == "done" and v.exact, v
    types = [e["type"] for e in events]
    assert "error" not in types and "data-retry" not in types
    assert types.count("start") == types.count("finish") == 1
    assert types.count("start-step") == STEPS + 1
    outputs = [e["output"] for e in events if e["type"] == "tool-output-available"]
    assert outputs == [{"sum": i + 1} for i in range(STEPS)]
    said = "".join(e["delta"] for e in events if e["type"] == "text-delta")
    assert all(f"step {i} looks at the numbers." in said for i in range(STEPS))
    assert said.endswith("all done.")
    assert runs(tmp_path / "runs.jsonl", "add", "start") == 2 * STEPS  # never run twice
    assert cut_calls == uncut_calls == STEPS + 1  # no model call made again
    assert cut_tokens <= 1.2 * uncut_tokens
    assert meta["handbacks"] == "5" and "lost" not in meta, meta


async def test_a_lost_worker_still_counts_where_a_hand_back_does_not(tmp_path: Path) -> None:
    """``WORKER_MAX_ATTEMPTS=1``: the run survives a SIGTERM (a hand-back), and then the
    first lost worker (``kill -9``) ends it: the next worker gives up."""
    with FakeAnthropicServer() as model, Cluster(tmp_path, workers_n=0) as cluster:
        cluster.worker_env = {
            **tool_worker_env(model.base_url, tmp_path),
            "WORKER_MAX_ATTEMPTS": "1",
            "WORKER_GRACE_SECONDS": "15",
        }
        for reply in agent_run("k", 0.5, steps=4):
            model.enqueue(reply)
        first = await asyncio.to_thread(cluster.add_worker)
        fe = cluster.frontends[0].url
        r = cluster.client()
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
            gid = await create_generation(client, fe, "add them up", max_steps=5)
            viewers = [Viewer(cluster.urls, gid) for _ in range(3)]
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_viewers, client, viewers, 120)
                await until(lambda: owned_by(r, gid, first), "the first worker's run", 30)
                second = await asyncio.to_thread(cluster.add_worker)
                assert await asyncio.to_thread(first.stop, signal.SIGTERM, 30) == 0
                await until(lambda: owned_by(r, gid, second), "the hand-back", 30)
                base = _seq(r, gid)
                await poll(lambda: _at(r, gid, base + 3), "a step under way", 30)
                second.stop(signal.SIGKILL)
                await asyncio.to_thread(cluster.add_worker)
                status = await wait_status(client, fe, gid, {"completed", "failed"}, 60)
            stored = stored_events(r, gid)
            meta = stream_meta(r, gid)
            r.close()
    verdicts = [verdict(v, stored) for v in viewers]
    report("a hand-back, then a lost worker (budget 1)", verdicts)
    for v in verdicts:
        assert v.outcome == "done" and v.exact, v
    assert status["status"] == "failed", status
    last = json.loads(stored[-1].data)
    assert last == {"type": "error", "errorText": "gave up after 1 attempts (workers were lost)"}
    assert meta["handbacks"] == "1" and meta["lost"] == "1", meta


async def test_a_duplicate_job_of_a_live_generation_is_dropped(tmp_path: Path) -> None:
    """A second job of a running generation (a decision's job queued again under a
    backlog, a job delivered twice) reaches another worker: it is acknowledged and
    dropped there; the owner runs on, never fenced, and viewers see nothing of it."""
    with Cluster(tmp_path, workers_n=0, worker_env={"WORKER_MERGE_MS": "0"}) as cluster:
        # One slot: the owner cannot take the duplicate itself, the other worker does.
        owner = await asyncio.to_thread(
            cluster.add_worker, {"WORKER_CONCURRENCY": "1", "WORKER_FAKE_DELAY_MS": "60"}
        )
        fe = cluster.frontends[0].url
        r = cluster.client()
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
            gid = await create_generation(client, fe, "a long one", max_tokens=160)
            viewers = [Viewer(cluster.urls, gid) for _ in range(3)]
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_viewers, client, viewers, 60)
                await until(lambda: owned_by(r, gid, owner), "the owner's run", 30)
                # The other worker starts only now: started before, it could take the
                # first job itself (it did, on a loaded machine), and there is no owner.
                other = await asyncio.to_thread(cluster.add_worker)
                await poll(lambda: _at(r, gid, 4), "some output")
                r.xadd(keys.jobs_key("anthropic"), {"id": gid})  # the duplicate
                await poll(lambda: _logged(other, "duplicate job dropped"), "the drop", 30)
                status = await wait_status(client, fe, gid, {"completed", "failed"}, 60)
            stored = stored_events(r, gid)
            meta = stream_meta(r, gid)
            queued = r.xlen(keys.jobs_key("anthropic"))
            r.close()
    verdicts = [verdict(v, stored) for v in viewers]
    report("a duplicate job under a live owner", verdicts)
    for v in verdicts:
        assert v.outcome == "done" and v.exact, v
    assert status["status"] == "completed", status
    assert owner_pid(meta["owner"]) == owner.pid and meta["attempt"] == "1"
    assert "lost" not in meta and "handbacks" not in meta
    types = [json.loads(e.data)["type"] for e in stored]
    assert "data-retry" not in types and types.count("start") == 1
    assert "giving it up" not in owner.log() and "another owner" not in owner.log()
    assert queued == 0  # both jobs settled: the owner's done, the duplicate acknowledged


def _seq(r: Any, gid: str) -> int:
    return int(stream_meta(r, gid).get("seq", 0))


async def _at(r: Any, gid: str, seq: int) -> bool:
    """The stream reached ``seq`` (three past a point: a model call's output streams)."""
    return _seq(r, gid) >= seq


async def _asked(model: FakeAnthropicServer, requests: int) -> bool:
    return model.request_count >= requests


async def _logged(proc: Proc, line: str) -> bool:
    return line in proc.log()
