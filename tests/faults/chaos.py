"""The chaos run for minutes, with its figures printed (``make chaos``; docs/reliability.md).

    .venv/bin/python -m tests.faults.chaos --minutes 3

Starts its own Redis, two front-ends, three workers and the local Anthropic server playing
an agent with tools (``tests/support/chaos.py``), keeps ``--generations`` generations in
flight, and kills (``kill -9``) or stops (SIGTERM) a random worker every one to three
seconds, starting a replacement at once. Prints the generations completed and ended with a
reason, the output tokens billed against an uncut run's, the longest gap a viewer saw, and
the answers the AI SDK's own reader does not read once and whole. Exits 1 if a viewer
missed or repeated an event, an answer ended without a reason, or an answer read wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from tests.support.chaos import Chaos, Figures


def problems(figures: Figures) -> list[str]:
    found = [f"viewer: {p}" for p in figures.viewer_problems]
    found += [f"answer: {p}" for p in figures.answer_problems]
    found += [f"ended without a reason: {n}" for r, n in figures.failed.items() if "no reason" in r]
    return found


async def chaos(minutes: float, generations: int, steps: int, seed: int) -> int:
    with tempfile.TemporaryDirectory(prefix="chaos-") as root:
        run = Chaos(Path(root), minutes * 60, generations=generations, steps=steps, seed=seed)
        figures = await run.run()
    print("\n".join(figures.lines()))
    found = problems(figures)
    for problem in found[:20]:
        print("PROBLEM:", problem)
    return 1 if found else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--generations", type=int, default=50, help="in flight at once")
    parser.add_argument("--steps", type=int, default=4, help="tool steps of each answer")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sys.exit(asyncio.run(chaos(args.minutes, args.generations, args.steps, args.seed)))


if __name__ == "__main__":
    main()
