"""The Durable Streams server conformance suite (``@durable-streams/server-conformance-tests``
0.3.6, run by node: tests/support/durable.py) against the front-ends' ``/v1/stream/{path}``,
in three deployments of real processes on 127.0.0.1:

- one front-end on the session's Redis;
- two front-ends behind nginx routing by plain round robin, so that consecutive requests
  of each test of the suite go to different front-ends: every read after a write, every
  long-poll woken by an append and every SSE reader fed by one, crosses front-ends;
- the same on a Redis Cluster of three primaries, where the streams of one test (a fork
  and its source among them) live in different slots.

Each must pass every test of the suite but the six opt-in subscription tests, which the
suite skips unless asked. ``make test`` runs every test behind the round-robin nginx,
where every read crosses front-ends, its property tests (fast-check, the third of a run
with the most requests) at a quarter of their runs each; the other two deployments leave
out the property tests and the large payloads (a 100 KiB stream read back page by page, a
10 MiB append: the same front-end code and limits in every deployment, the most client
CPU of a run). ``make test-long`` runs the whole suite, every property at its full runs,
in all three. The front-ends are started with
``BROADCASTER_DS_LONG_POLL_SECONDS=0.5`` and the suite is told 500 ms: it gives each of its
long-poll tests that + 1 s; and with ``BROADCASTER_CORS_ORIGINS=*``, as a deployment that
serves browsers is. Each test prints the suite's own counts, e.g.

    durable streams conformance (one front-end): 332 passed, 0 failed, 6 skipped of 338

On a failure the message lists each failed test of the suite with its error, then the
front-ends' log tails; vitest's full output and JSON report are in the test's tmp_path.

Needs node >= 20, ``npm ci --prefix tests/clients/durable`` (make test does it), and nginx
for the last two; without them the tests fail and say so. They never skip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcaster.core.embedded import ServerNotFound, free_port
from tests.support import long_form
from tests.support.durable import (
    CHUNKING_GROUP,
    PROPERTY_GROUP,
    ConformanceResult,
    require_node_packages,
    run_conformance,
)
from tests.support.nginx import Nginx, find_nginx
from tests.support.procs import Proc, start_frontend
from tests.support.topologies import log_tails, start_cluster, stopped_at_end

LONG_POLL_MS = 500
LEFT_OUT = () if long_form.LONG else (PROPERTY_GROUP, CHUNKING_GROUP)
"""What the one front-end and the Cluster leave out in ``make test``: the property tests
and the large payloads, which the round-robin deployment runs."""
PROPERTY_SHARE = 1.0 if long_form.LONG else 0.25
"""The share of each property test's runs in the round-robin deployment."""
FRONTEND_ENV = {
    "BROADCASTER_DS_LONG_POLL_SECONDS": str(LONG_POLL_MS / 1000),
    # The suite checks CORS preflights (from https://example.com), as a deployment serving
    # Durable Streams to browsers answers them.
    "BROADCASTER_CORS_ORIGINS": "*",
}


@contextlib.contextmanager
def frontends(
    redis_url: str, logs: Path, names: list[str], env: dict[str, str] | None = None
) -> Iterator[list[Proc]]:
    """Front-ends on ``redis_url``, stopped by pid on exit."""
    started: list[Proc] = []
    try:
        for name in names:
            started.append(start_frontend(redis_url, logs, name, {**FRONTEND_ENV, **(env or {})}))
        yield started
    finally:
        for p in started:
            p.stop()


@contextlib.contextmanager
def round_robin_nginx(logs: Path, procs: list[Proc]) -> Iterator[Nginx]:
    nginx = Nginx(
        find_nginx(), logs / "nginx", free_port(), [p.port or 0 for p in procs], round_robin=True
    )
    try:
        nginx.start()
        yield nginx
    finally:
        nginx.stop()


def check(where: str, result: ConformanceResult, procs: list[Proc]) -> None:
    """Print the suite's counts; fail with every failed test and the logs' tails unless
    everything but the subscription tests passed."""
    print(f"durable streams conformance ({where}): {result.counts()}")
    problems = result.problems()
    assert not problems, (
        f"durable streams conformance ({where}): " + "; ".join(problems) + "\n"
        f"{result.format()}\n{log_tails(procs)}"
    )


def check_both_served(nginx: Nginx, procs: list[Proc]) -> None:
    """Round robin really spread the suite's requests: each front-end served a share of
    them (else the test would not be testing what it says)."""
    served: dict[str, int] = {}
    for row in nginx.requests():
        if row["uri"].startswith("/v1/stream/"):
            for upstream in row["upstream"].split(", "):
                served[upstream] = served.get(upstream, 0) + 1
    total = sum(served.values())
    for p in procs:
        share = served.get(f"127.0.0.1:{p.port}", 0)
        assert share >= total // 4, f"{p.name} served {share} of {total} requests: {served}"


@long_form.mark
@pytest.mark.timeout(600)
def test_one_frontend(redis_url: str, tmp_path: Path) -> None:
    require_node_packages()
    with frontends(redis_url, tmp_path, ["ds-frontend"]) as procs:
        result = run_conformance(procs[0].url, LONG_POLL_MS, tmp_path, leave_out=LEFT_OUT)
    check("one front-end", result, procs)


@pytest.mark.timeout(600)
def test_two_frontends_behind_round_robin_nginx(redis_url: str, tmp_path: Path) -> None:
    require_node_packages()
    with (
        frontends(redis_url, tmp_path, ["ds-frontend-a", "ds-frontend-b"]) as procs,
        round_robin_nginx(tmp_path, procs) as nginx,
    ):
        result = run_conformance(nginx.url, LONG_POLL_MS, tmp_path, property_share=PROPERTY_SHARE)
    check("two front-ends, round robin", result, procs)
    check_both_served(nginx, procs)


@long_form.mark
@pytest.mark.timeout(600)
def test_two_frontends_on_a_redis_cluster(tmp_path: Path) -> None:
    require_node_packages()
    try:
        cluster = start_cluster(tmp_path / "cluster", primaries=3, replicas=0)
    except ServerNotFound as exc:
        pytest.fail(f"this test needs a Redis server: {exc}", pytrace=False)
    env = {"REDIS_CLUSTER": "true"}
    names = ["ds-cluster-frontend-a", "ds-cluster-frontend-b"]
    with (
        stopped_at_end(cluster),
        frontends(cluster.seed, tmp_path, names, env) as procs,
        round_robin_nginx(tmp_path, procs) as nginx,
    ):
        result = run_conformance(nginx.url, LONG_POLL_MS, tmp_path, leave_out=LEFT_OUT)
    check("two front-ends on a Redis Cluster, round robin", result, procs)
    check_both_served(nginx, procs)
