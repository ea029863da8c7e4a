"""The soak: scenario 8 (load with churn) for several minutes, with its figures printed.

    .venv/bin/python -m tests.faults.soak --minutes 5

Starts its own Redis, two front-ends and two workers on 127.0.0.1 (see tests/support/churn.py),
keeps ``--generations`` generations in flight with ``--viewers`` viewers dropping and
resuming at random, then prints the events checked, lost and duplicated, fds, Redis
connections and asyncio tasks before and after, and the RSS curve of every process.
Exits 1 if any viewer missed or repeated an event, or if anything was left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from tests.support.churn import REDIS_POOL, Churn, Figures, churn_cluster


def problems(figures: Figures, processes: int) -> list[str]:
    found = []
    if figures.lost or figures.duplicated or figures.not_exact:
        found.append(f"viewings not exact: {figures.not_exact[:3]}")
    for name, value in figures.after.items():
        if name.endswith("_fds") and value > figures.before[name] + REDIS_POOL + 2:
            found.append(f"{name}: {figures.before[name]} -> {value}")
        if name.endswith("_tasks") and value > figures.before[name] + 2:
            found.append(f"{name}: {figures.before[name]} -> {value}")
    if figures.after["redis_clients"] > processes * (REDIS_POOL + 2):
        found.append(f"redis_clients: {figures.after['redis_clients']}")
    return found


async def soak(minutes: float, generations: int, viewers: int, rss_interval: float) -> int:
    with (
        tempfile.TemporaryDirectory(prefix="soak-") as root,
        churn_cluster(Path(root)) as cluster,
    ):
        churn = Churn(cluster, seconds=minutes * 60, generations=generations, viewers=viewers)
        figures = await churn.run(rss_interval=rss_interval)
        processes = len(cluster.frontends) + len(cluster.workers)
        dead = [p.name for p in [*cluster.frontends, *cluster.workers] if not p.alive()]
    print("\n".join(figures.lines()))
    found = problems(figures, processes) + [f"{name} died" for name in dead]
    for problem in found:
        print("PROBLEM:", problem)
    return 1 if found else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--generations", type=int, default=50)
    parser.add_argument("--viewers", type=int, default=500)
    parser.add_argument("--rss-interval", type=float, default=5.0, help="seconds")
    args = parser.parse_args()
    code = asyncio.run(soak(args.minutes, args.generations, args.viewers, args.rss_interval))
    sys.exit(code)


if __name__ == "__main__":
    main()
