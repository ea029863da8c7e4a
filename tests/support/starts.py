"""Counting the processes the suite starts: with ``BROADCASTER_TEST_STARTS_LOG=FILE`` set,
every process ``procs.spawn`` starts (front-ends, workers, the tools' servers) is
appended to FILE, one line each with the test that started it; ``python -m
tests.support.starts FILE`` then lists the modules that start the most. Off by default.

A process start is about half a second of CPU (a front-end's imports), so these counts
say where sharing a process between tests saves the most."""

from __future__ import annotations

import argparse
import collections
import os
from pathlib import Path

ENV = "BROADCASTER_TEST_STARTS_LOG"


def record(name: str, args: list[str], forked: bool) -> None:
    """One line in the log, when it is asked for: the test (pytest's current one, whose
    fixtures are being set up or torn down), the process's name, whether it was forked
    (tests/support/forkserver.py) or a new interpreter, and its command."""
    path = os.environ.get(ENV)
    if not path:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "(outside a test)").split(" ")[0]
    how = "forked" if forked else "new"
    line = f"{test}\t{name}\t{how}\t{' '.join(args[:3])}\n"
    with open(path, "a") as log:  # one short append per line: whole under concurrent writers
        log.write(line)


def kind(command: str) -> str:
    if command.startswith("-m broadcaster serve"):
        return "front-end"
    if command.startswith("-m worker"):
        return "worker"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.starts")
    parser.add_argument("log", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    per_module: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in args.log.read_text().splitlines():
        test, _, how, command = line.split("\t")
        per_module[test.split("::")[0]][f"{kind(command)} {how}"] += 1
    total = collections.Counter[str]()
    for counts in per_module.values():
        total.update(counts)
    print(f"{sum(total.values())} starts: {dict(total)}")
    ranked = sorted(per_module.items(), key=lambda kv: -sum(kv[1].values()))
    for module, counts in ranked[: args.top]:
        print(f"{sum(counts.values()):5} {module}  {dict(counts)}")


if __name__ == "__main__":
    main()
