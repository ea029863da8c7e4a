"""Where the suite's CPU goes: with ``BROADCASTER_TEST_CPU_LOG=FILE`` set, each test's
CPU is appended to FILE as it ends, one line each: the test process's own (its code, the
clients it drives, anything it serves in-process) and its reaped children's (the
front-ends, workers, Redis servers, browsers and node scripts it started and stopped,
with their own children), with the wall time, the process that ran it and when it ended.
``python -m tests.support.cpu_log FILE`` then lists the modules that cost the most, and
each process's span: how long its tests ran and which modules it ended with (the run's
tail). Off by default.

The suite is bound by CPU on two cores (every test process beside three others), so a
module's CPU, not its wall time, says what shortening it saves. A process that a
module-scoped fixture starts is counted when the fixture stops it, in the module's last
test; one that outlives its test process (none should) is not counted."""

from __future__ import annotations

import argparse
import collections
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV = "BROADCASTER_TEST_CPU_LOG"


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    path = os.environ.get(ENV)
    if not path:
        return (yield)
    own, children = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    try:
        return (yield)
    finally:
        own = _cpu(resource.RUSAGE_SELF) - own
        children = _cpu(resource.RUSAGE_CHILDREN) - children
        worker = getattr(item.config, "workerinput", None)  # pytest-xdist's, in its processes
        process = worker["workerid"] if worker else "main"
        wall = time.monotonic() - started
        line = (
            f"{item.nodeid}\t{own:.3f}\t{children:.3f}\t{wall:.3f}\t{process}\t{time.time():.3f}\n"
        )
        with open(path, "a") as log:  # one short append per line: whole under concurrent writers
            log.write(line)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.cpu_log")
    parser.add_argument("log", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    cpu: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
    # process -> [(start, end, module)], from logs that say which process ran each test
    runs: dict[str, list[tuple[float, float, str]]] = collections.defaultdict(list)
    for line in args.log.read_text().splitlines():
        test, own, children, wall, *where = line.split("\t")
        module = test.split("::")[0]
        sums = cpu[module]
        for i, value in enumerate((own, children, wall)):
            sums[i] += float(value)
        if where:
            process, end = where
            runs[process].append((float(end) - float(wall), float(end), module))
    total = [sum(s[i] for s in cpu.values()) for i in range(3)]
    print(
        f"CPU {total[0] + total[1]:.0f} s: the test processes {total[0]:.0f} s, the processes "
        f"they started {total[1]:.0f} s; the tests' wall time, summed, {total[2]:.0f} s"
    )
    print("  CPU s   own  started    wall  module")
    ranked = sorted(cpu.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
    for module, (own, children, wall) in ranked[: args.top]:
        print(f"{own + children:7.1f} {own:5.0f} {children:8.0f} {wall:7.0f}  {module}")
    if runs:
        _timeline(runs)


def _timeline(runs: dict[str, list[tuple[float, float, str]]]) -> None:
    """Each process's span, how much of it its tests ran (the rest: fixtures, waiting for
    a turn, idle at the end), and the modules it ran last, in seconds from the run's first
    test."""
    zero = min(start for tests in runs.values() for start, _, _ in tests)
    print("process  tests' wall  span (from, to)  last modules (ending at)")
    for process, tests in sorted(runs.items()):
        tests.sort()
        busy = sum(end - start for start, end, _ in tests)
        ends: dict[str, float] = {}
        for _, end, module in tests:
            ends[module] = end - zero
        last = sorted(ends.items(), key=lambda kv: kv[1])[-3:]
        print(
            f"{process:8} {busy:11.0f}  {tests[0][0] - zero:5.0f} to {tests[-1][1] - zero:5.0f}  "
            + ", ".join(f"{m.removeprefix('tests/')} ({t:.0f})" for m, t in last)
        )


if __name__ == "__main__":
    main()
