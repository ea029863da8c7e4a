"""A dead worker is seen by its closed connection, a frozen one by its lease
(docs/reliability.md, "How long a lost worker's generation waits"), on real processes on
one Redis, a Redis Cluster and Sentinel.

A worker killed (``kill -9``) mid-answer, under a lease far longer than the test, is
continued by another worker from where it was: the takeover cannot have been the
lease's. A worker frozen (``SIGSTOP``) keeps its subscription: it is taken over only once
its lease has lapsed, and when it wakes its late writes are refused. Figures are printed,
never asserted.
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

from tests.support.faults import (
    Received,
    Viewer,
    create_generation,
    owned_by,
    report,
    stored_events,
    stream_meta,
    verdict,
    wait_status,
)
from tests.support.liveness import (
    Deployment,
    consumer_of,
    deployment,
    liveness_state,
    settled,
    subscribers,
)
from tests.support.polling import until
from tests.support.procs import Proc
from worker.providers.fake import fake_reply

pytestmark = pytest.mark.anyio

LONG_LEASE = {"WORKER_LEASE_SECONDS": "120", "WORKER_FAKE_DELAY_MS": "80", "WORKER_MERGE_MS": "0"}
"""A lease no takeover in these tests can wait for; about 5 s of answer (64 words)."""

SHORT_LEASE = {"WORKER_LEASE_SECONDS": "3", "WORKER_FAKE_DELAY_MS": "80", "WORKER_MERGE_MS": "0"}

RESCUER = {"WORKER_FAKE_DELAY_MS": "20"}
"""The worker that takes over answers the rest four times faster: what is checked is how
it took over and what it wrote, not how long the rest of the answer takes."""


def _at_seq(client: Any, gid: str, seq: int) -> bool:
    return int(stream_meta(client, gid).get("seq", 0)) >= seq


async def _started(d: Deployment, http: httpx.AsyncClient, prompt: str) -> tuple[str, Proc, Proc]:
    """A generation that the first worker runs, and a second worker ready to take it over
    (its own subscription settled), while the first is still mid-answer."""
    victim = d.add_worker()
    gid = await create_generation(http, d.url, prompt)
    r = d.client()
    await until(lambda: owned_by(r, gid, victim), "the first worker's claim", 30)
    rescuer = d.add_worker(RESCUER)
    await until(lambda: settled(r, rescuer), "the second worker ready to judge", 20)
    await until(lambda: _at_seq(r, gid, 5), "output before the fault", 30)
    assert stream_meta(r, gid)["status"] == "running", "the answer ended before the fault"
    return gid, victim, rescuer


@pytest.mark.parametrize("topology", ["single", "cluster", "sentinel"])
async def test_a_killed_worker_is_continued_long_before_its_lease(
    tmp_path: Path, topology: str
) -> None:
    """kill -9 mid-answer: the rescuer finds the worker dead (its subscription gone) and
    continues the answer, under a 120 s lease; every viewer gets every event once."""
    with deployment(topology, tmp_path, LONG_LEASE) as d:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as http:
            gid, victim, rescuer = await _started(d, http, f"killed on {topology}")
            r = d.client()
            dead = consumer_of(r, victim)
            assert dead is not None and subscribers(r, dead) == 1
            viewers = [Viewer([d.url], gid) for _ in range(4)]
            async with anyio.create_task_group() as tg:
                for v in viewers:
                    tg.start_soon(v.run, http)
                await until(lambda: _at_seq(r, gid, 8), "viewers reading the answer", 30)
                killed_at = time.monotonic()
                victim.stop(signal.SIGKILL)
                # Well within the lease (120 s): only a dead worker's takeover can do it.
                await until(lambda: owned_by(r, gid, rescuer), "the takeover", 30)
                taken_s = time.monotonic() - killed_at
                await wait_status(http, d.url, gid, {"completed"}, 60)
            stored = stored_events(r, gid)
            meta = stream_meta(r, gid)
            state = liveness_state(r, dead)
            r.close()
    judge(f"worker kill -9 ({topology})", viewers, stored, taken_s, 120)
    assert meta["attempt"] == "2" and meta["lost"] == "1" and meta["status"] == "completed"
    types = [e.type for e in stored]
    assert types.count("data-continued") == 1, types
    notice = json.loads(stored[types.index("data-continued")].data)
    assert notice["data"]["mode"] == "continue"
    # The fake model is exact: the continued answer is the uncut one, no word twice.
    assert one_text(stored) == _uncut(meta)
    assert "found dead" in rescuer.log()
    assert state in ("d", ""), state  # found dead (and forgotten later)


@pytest.mark.parametrize("topology", ["single", "cluster"])
async def test_a_frozen_worker_keeps_its_lease_and_is_fenced_when_it_wakes(
    tmp_path: Path, topology: str
) -> None:
    """SIGSTOP mid-answer: the frozen worker's subscription stays, so nobody takes it over
    before its lease lapses; then the rescuer does, and the woken worker's late appends
    are refused: no viewer sees a word twice."""
    with deployment(topology, tmp_path, SHORT_LEASE) as d:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as http:
            gid, sleeper, rescuer = await _started(d, http, f"frozen on {topology}")
            r = d.client()
            frozen = consumer_of(r, sleeper)
            assert frozen is not None
            viewers = [Viewer([d.url], gid) for _ in range(4)]
            async with anyio.create_task_group() as tg:
                for v in viewers:
                    tg.start_soon(v.run, http)
                await until(lambda: _at_seq(r, gid, 8), "viewers reading the answer", 30)
                d.pause(sleeper)
                paused_at = time.monotonic()
                last_hold = int(stream_meta(r, gid)["held_at"])
                await until(lambda: owned_by(r, gid, rescuer), "the takeover after the lease", 30)
                taken_s = time.monotonic() - paused_at
                taken_hold = int(stream_meta(r, gid)["held_at"])
                still_subscribed = subscribers(r, frozen)
                state = liveness_state(r, frozen)
                d.resume(sleeper)  # wakes mid-answer, with appends to make
                await wait_status(http, d.url, gid, {"completed"}, 60)
                await until(lambda: "giving it up" in sleeper.log(), "the woken worker to stop", 20)
            stored = stored_events(r, gid)
            meta = stream_meta(r, gid)
            r.close()
    judge(f"worker SIGSTOP ({topology})", viewers, stored, taken_s, 3)
    assert still_subscribed == 1 and state == "a", (still_subscribed, state)
    # Taken over only once its hold had lapsed: the new claim's hold is a lease later.
    assert taken_hold - last_hold >= 3000, (last_hold, taken_hold)
    assert "found dead" not in rescuer.log()
    assert meta["attempt"] == "2" and meta["status"] == "completed"
    assert one_text(stored) == _uncut(meta)


def judge(
    title: str, viewers: list[Viewer], stored: list[Received], taken_s: float, lease: int
) -> None:
    """Every viewer ended with every event once, in order; the figures printed."""
    verdicts = [verdict(v, stored) for v in viewers]
    report(title, verdicts, takeover_s=f"{taken_s:.2f}", lease_s=lease)
    for seen in verdicts:
        assert seen.outcome == "done" and seen.exact, seen


def _uncut(meta: dict[str, str]) -> str:
    """The answer the fake model gives the stored request, whole."""
    return "".join(fake_reply(json.loads(meta["request"])))


def one_text(stored: list[Received]) -> str:
    """The text the stream's deltas spell, in order."""
    deltas = (json.loads(e.data) for e in stored if e.type == "text-delta")
    return "".join(d.get("delta", "") for d in deltas)
