"""What a process start costs the test suite: the CPU seconds of a front-end
(``python -m broadcaster serve``, until ``/readyz`` answers, then SIGTERM) and of a worker
(``python -m worker run``, until it says which provider it serves, then SIGTERM), measured
as the children's CPU time (``getrusage(RUSAGE_CHILDREN)``), which a loaded machine
disturbs far less than wall time.

Several checkouts side by side in one run (each root's own ``.venv``), their starts taken
in turn, so that a change of load hits them alike::

    python -m tests.perf.start_cost --starts 10 /path/to/main .

prints each root's CPU per start (min, median) and its median's ratio to the first root's.
With ``--forked``, the starts the suite makes are measured too, in the same turns: this
checkout's, forked from the test process's fork server (tests/support/forkserver.py).
"""

from __future__ import annotations

import argparse
import resource
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.support import forkserver
from tests.support.polling import wait_for
from tests.support.ports import free_port
from tests.support.procs import Proc, redis_server, spawn, wait_ready


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


FORKED = Path("forked")
"""The root that stands for this checkout's starts through the fork server."""


def _where(root: Path) -> dict[str, object]:
    if root == FORKED:
        return {"fork": True, "program": sys.executable}
    return {"cwd": root, "program": str(root / ".venv/bin/python")}


def frontend_start(root: Path, redis_url: str, logs: Path) -> float:
    """One front-end started until ready and stopped: its CPU seconds."""
    before = children_cpu()
    port = free_port()
    proc = spawn(
        "frontend",
        ["-m", "broadcaster", "serve", "--port", str(port)],
        {"REDIS_URL": redis_url, "BROADCASTER_LOG_LEVEL": "info"},
        logs,
        **_where(root),  # type: ignore[arg-type]
    )
    proc.port = port
    try:
        wait_ready(proc, timeout=60)
    finally:
        proc.stop(signal.SIGTERM)
    return children_cpu() - before


def worker_start(root: Path, redis_url: str, logs: Path) -> float:
    """One worker (the fake provider) started until it serves and stopped: its CPU
    seconds."""
    before = children_cpu()
    proc: Proc = spawn(
        "worker",
        ["-m", "worker", "run"],
        {"REDIS_URL": redis_url, "WORKER_PROVIDER": "fake"},
        logs,
        **_where(root),  # type: ignore[arg-type]
    )
    try:
        wait_for("the worker's start", lambda: "provider" in proc.log(), 60, context=proc.log)
    finally:
        proc.stop(signal.SIGTERM)
    return children_cpu() - before


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.perf.start_cost")
    parser.add_argument("roots", nargs="+", type=Path, help="checkouts, each with its .venv")
    parser.add_argument("--starts", type=int, default=10, help="starts of each kind per root")
    parser.add_argument(
        "--forked", action="store_true", help="and this checkout's, forked as the suite starts them"
    )
    args = parser.parse_args()
    roots = [r.resolve() for r in args.roots] + ([FORKED] if args.forked else [])
    if args.forked and forkserver.server() is None:
        parser.error("--forked: no fork server (is BROADCASTER_TEST_FORK=0 set?)")
    cpu: dict[tuple[Path, str], list[float]] = {(r, k): [] for r in roots for k in ("fe", "wk")}
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp) / "redis") as redis:
        logs = Path(tmp)
        started = time.monotonic()
        for _ in range(args.starts):
            for root in roots:  # in turn: a change of load hits every root alike
                cpu[(root, "fe")].append(frontend_start(root, redis.url, logs))
                cpu[(root, "wk")].append(worker_start(root, redis.url, logs))
        wall = time.monotonic() - started
    print(f"{args.starts} starts of each kind per root, in turn ({wall:.0f} s wall)")
    print("CPU seconds per start, min and median (the min is the least disturbed by load)")
    head = f"{'min':>6} {'median':>7} {'ratio':>6}"
    print(f"{'':<40} {'front-end':^21} {'worker':^21}")
    print(f"{'root':<40} {head} {head}")
    base = {k: statistics.median(cpu[(roots[0], k)]) for k in ("fe", "wk")}
    for root in roots:
        cells = []
        for kind in ("fe", "wk"):
            runs = cpu[(root, kind)]
            median = statistics.median(runs)
            cells.append(f"{min(runs):>6.3f} {median:>7.3f} {median / base[kind]:>6.2f}")
        print(f"{root!s:<40} {cells[0]} {cells[1]}")


if __name__ == "__main__":
    main()
