"""Fault scenarios on real processes (issue 3): every viewer ends with every event of
its stream exactly once, in order, or is told clearly that it cannot.

Each scenario runs a ``Cluster`` (one Redis, two front-ends, two workers, all separate
processes on 127.0.0.1) with viewers that reconnect as EventSource does, and checks every
viewer's received sequence against the stream itself (``tests/fault_support.py``). The
figures each prints go into docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import anyio
import httpx
import pytest

from tests.fault_support import (
    Cluster,
    Viewer,
    create_generation,
    report,
    stored_events,
    verdict,
)

pytestmark = pytest.mark.anyio

SLOW_FAKE = {"WORKER_FAKE_DELAY_MS": "40", "WORKER_MERGE_MS": "0"}
"""About 70 events over 3 s per generation: long enough to fault it mid-stream."""


async def test_a_frontend_killed_mid_stream(tmp_path: Path) -> None:
    with Cluster(tmp_path, worker_env=SLOW_FAKE) as cluster:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
            a, b = cluster.frontends
            gids = [await create_generation(client, a.url, f"kill front-end {i}") for i in range(4)]
            viewers = [
                Viewer([fe.url, other.url], gid)
                for gid in gids
                for fe, other in ((a, b), (b, a))
                for _ in range(5)
            ]
            with anyio.fail_after(90):
                async with anyio.create_task_group() as tg:
                    for v in viewers:
                        tg.start_soon(v.run, client)
                    await asyncio.sleep(1.0)
                    killed_at = time.monotonic()
                    a.stop(signal.SIGKILL)
            with cluster.client() as r:
                verdicts = [verdict(v, stored_events(r, v.stream_id)) for v in viewers]
    moved = [v for v in viewers if v.reconnect_gaps]
    worst = max((max(v.reconnect_gaps) for v in moved), default=0.0)
    report(
        "frontend kill -9",
        verdicts,
        viewers_moved=len(moved),
        worst_resume_s=f"{worst:.2f}",
        since_kill_s=f"{time.monotonic() - killed_at:.1f}",
    )
    assert len(moved) >= 10, "the killed front-end's viewers should have reconnected"
    for v in verdicts:
        assert v.outcome == "done" and v.exact, v
