"""A worker on OpenAI's Responses API killed (``kill -9``) in the middle of the model's
text: the worker that takes the generation over re-attaches to the same background
response from the last event the stream holds (``GET /v1/responses/{id}?stream=true&
starting_after=N``) instead of calling the model again (docs/reliability.md, "Takeover on
the Responses API").

Real processes on 127.0.0.1 (``tests/support/faults.py``'s ``Cluster``): one Redis, two
front-ends, workers on the real ``openai`` SDK against the local Responses server, which
keeps background responses in memory and counts the responses created. Viewers that
reconnect as EventSource does check that every event arrived exactly once.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from broadcaster.generations.content import fold
from tests.support import fake_openai_responses as fr
from tests.support.faults import (
    Cluster,
    Viewer,
    create_generation,
    owned_by,
    report,
    stored_events,
    stream_meta,
    verdict,
)
from tests.support.polling import poll, until
from tests.support.procs import Proc
from tests.support.stacks import responses_env
from worker.providers.base import RESUME_FIELD

pytestmark = pytest.mark.anyio

SCRIPT = fr.reply(reasoning=["Thinking."], text=["Hel", "lo ", "wor", "ld"])
HELD = 12
"""The script's events up to the text delta ``lo ``: the response waits there (a gate)
while the worker is killed."""


async def run_viewers(client: httpx.AsyncClient, viewers: list[Viewer], seconds: float) -> None:
    with anyio.fail_after(seconds):
        async with anyio.create_task_group() as tg:
            for v in viewers:
                tg.start_soon(v.run, client)


def texts(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "text-delta")


async def _kill_mid_text(
    srv: fr.FakeResponsesServer,
    cluster: Cluster,
    tmp_path: Path,
    *,
    expire: bool,
    merge_ms: str = "0",
    sig: signal.Signals = signal.SIGKILL,
) -> tuple[list[Viewer], list[dict[str, Any]], dict[str, Any], Proc]:
    """Run a generation, stop its worker with ``sig`` once ``Hello `` is in the stream
    (SIGTERM: it hands the generation back after its grace period), start another (after
    expiring the response, if ``expire``), let the response go on."""
    opened = threading.Event()
    srv.enqueue([*SCRIPT[:HELD], fr.gate(opened), *SCRIPT[HELD:]])
    cluster.worker_env = {**responses_env(srv.base_url, tmp_path), "WORKER_MERGE_MS": merge_ms}
    victim = cluster.add_worker()
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
        gid = await create_generation(client, cluster.urls[0], "say hello", provider="openai")
        viewers = [Viewer(cluster.urls, gid) for _ in range(3)]
        r = cluster.client()

        async def hello_shown() -> bool:
            return texts([json.loads(e.data) for e in stored_events(r, gid)]) == "Hello "

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_viewers, client, viewers, 60)
            await poll(hello_shown, "the text 'Hello ' in the stream")
            point = json.loads(stream_meta(r, gid)[RESUME_FIELD])
            await anyio.to_thread.run_sync(victim.stop, sig)
            if expire:
                srv.expire(point["id"])
            rescuer = cluster.add_worker()
            await until(lambda: owned_by(r, gid, rescuer), "the takeover", 30)
            opened.set()
        events = [json.loads(e.data) for e in stored_events(r, gid)]
        verdicts = [verdict(v, stored_events(r, gid)) for v in viewers]
        r.close()
    title = f"responses takeover ({sig.name}, expired={expire}, merge {merge_ms} ms)"
    report(title, verdicts)
    for v in verdicts:
        assert v.outcome == "done" and v.exact, v
    return viewers, events, point, rescuer


@pytest.mark.parametrize(
    ("sig", "merge_ms"),
    [(signal.SIGKILL, "0"), (signal.SIGKILL, "20"), (signal.SIGTERM, "20")],
    ids=["kill-merge-0", "kill-merge-20", "term-handed-back"],
)
async def test_a_worker_lost_mid_text_is_followed_by_one_that_reattaches(
    tmp_path: Path, sig: signal.Signals, merge_ms: str
) -> None:
    """Killed, with each delta appended on its own and with the default merge window (a
    batch then never ends halfway through a Responses event); and stopped (SIGTERM), its
    generation handed back: the response is left running for the next worker."""
    with fr.FakeResponsesServer() as srv, Cluster(tmp_path, workers_n=0) as cluster:
        viewers, events, point, rescuer = await _kill_mid_text(
            srv, cluster, tmp_path, expire=False, merge_ms=merge_ms, sig=sig
        )
        cancelled = list(srv.cancelled)
        retrievals = [e.path for e in srv.retrievals()]
        log = rescuer.log()
    assert srv.created == 1  # the takeover cost no model call
    assert cancelled == []
    assert retrievals == [
        f"/v1/responses/{point['id']}?starting_after={point['after']}&stream=true"
    ]
    assert "re-attaching to response" in log and "Traceback" not in log
    types = [e["type"] for e in events]
    assert "data-retry" not in types
    assert types.count("start") == types.count("start-step") == types.count("finish") == 1
    assert types.count("text-start") == types.count("text-end") == 1
    assert texts(events) == "Hello world"
    for v in viewers:  # each viewer's answer is whole, no text twice
        assert texts([json.loads(e.data) for e in v.received]) == "Hello world"
    assert fold(events) == [
        {"type": "thinking", "thinking": "Thinking.", "signature": ""},
        {"type": "text", "text": "Hello world"},
    ]
    assert srv.errors == []


async def test_a_response_gone_at_takeover_is_made_again(tmp_path: Path) -> None:
    """The response expired while no worker held the generation: the takeover goes the
    usual way (``data-continued``, a new response asked to go on from the text shown,
    its repeat of it trimmed)."""
    with fr.FakeResponsesServer() as srv, Cluster(tmp_path, workers_n=0) as cluster:
        srv.set_default(fr.reply(text=["Hello ", "again"]))
        _, events, _, rescuer = await _kill_mid_text(srv, cluster, tmp_path, expire=True)
        retrievals = srv.retrievals()
        log = rescuer.log()
    assert srv.created == 2
    assert retrievals == []
    assert "Traceback" not in log
    types = [e["type"] for e in events]
    assert types.count("data-continued") == 1 and "data-retry" not in types
    assert types.count("start") == types.count("text-start") == 1, types
    assert texts(events) == "Hello again"  # "Hello " once: the model's repeat was trimmed
    assert types[-1] == "finish"
