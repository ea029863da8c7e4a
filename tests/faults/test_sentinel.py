"""Redis through Sentinel on real local servers (a primary, a replica, three Sentinels),
with real front-ends and workers configured as the contract says (``REDIS_SENTINELS``,
``REDIS_SENTINEL_SERVICE``): generations arrive complete and in order on two front-ends,
and when the primary is killed mid-stream, front-ends and workers follow the promotion of
the replica and viewers resume with nothing lost or duplicated, or are told."""

from __future__ import annotations

import asyncio
import signal
import statistics
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broadcaster.core.embedded import ServerNotFound
from tests.support.faults import Viewer
from tests.support.procs import ROOT, Proc, run_python
from tests.support.topologies import (
    WORKER_ENV,
    SentinelGroup,
    assert_exact,
    create_all,
    judge_failover,
    kill_mid_stream,
    start_sentinel_group,
    two_by_two,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    try:
        g = start_sentinel_group(tmp_path_factory.mktemp("sentinel"))
    except ServerNotFound as exc:
        pytest.fail(f"these tests need a Redis server: {exc}", pytrace=False)
    try:
        yield g
    finally:
        g.stop()


@pytest.fixture(scope="module")
def procs(group: SentinelGroup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Proc]]:
    logs: Path = tmp_path_factory.mktemp("sentinel-logs")
    env = {k: v for k, v in group.env.items() if k != "REDIS_URL"}
    worker_env = {**WORKER_ENV, **env}
    del worker_env["REDIS_CLUSTER"]
    with two_by_two("redis://", logs, "sentinel", env, worker_env) as started:
        yield started


async def test_generations_arrive_complete_on_two_frontends(
    group: SentinelGroup, procs: list[Proc]
) -> None:
    a, b = procs[0].url, procs[1].url
    ids = [f"sentinel-{i}" for i in range(8)]
    async with httpx.AsyncClient(timeout=30) as client:
        await create_all(client, a, ids, 24)
        viewers = [Viewer([fe], sid) for sid in ids for fe in (a, b)]
        await asyncio.gather(*(v.run(client) for v in viewers))
    assert_exact(group, viewers)


async def test_primary_killed_mid_stream_viewers_resume(
    group: SentinelGroup, procs: list[Proc]
) -> None:
    ids = [f"sentinel-failover-{i}" for i in range(4)]
    run = await kill_mid_stream(procs, ids, lambda: group.primary.stop(signal.SIGKILL))
    viewers, gaps, statuses = run.viewers, run.gaps, run.statuses
    assert group.current_primary_port() == group.replica.port, "the replica was not promoted"
    lost, duplicated, told = judge_failover(group, viewers)
    assert len(gaps) == len(viewers), "a viewer got nothing after the kill"
    print(
        f"\nsentinel failover: {len(viewers)} viewers; first event after the kill: "
        f"median {statistics.median(gaps):.1f}s, max {max(gaps):.1f}s; lost {lost}, "
        f"duplicated {duplicated}, told {told}, "
        f"connections {sum(v.connects for v in viewers)} for {len(viewers)} viewers; "
        f"statuses {sorted(statuses)}"
    )
    assert all(s in ("completed", "failed") for s in statuses), statuses


def test_serve_refuses_sentinels_without_a_service_name_at_start() -> None:
    """The refusal the unit tests check (tests/unit/test_cluster_config.py), seen where an
    operator sees it: ``serve`` exits at once, naming the missing variable."""
    env = {"REDIS_SENTINELS": "127.0.0.1:1", "PATH": "/usr/bin:/bin"}
    out = run_python(["-m", "broadcaster", "serve"], 30, env=env, cwd=ROOT)
    assert out.returncode != 0
    assert "REDIS_SENTINEL_SERVICE" in out.stderr
