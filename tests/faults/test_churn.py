"""Scenario 8 of docs/reliability.md, short: load with churn for ~10 s with generations of
~7 s and 250 viewers, ~45 s with generations of ~20 s and 500 viewers in ``make
test-long`` (the engine: tests/support/churn.py; the soak of several minutes:
``python -m tests.faults.soak --minutes 5``).

Asserted: every viewing ends with every event of its stream exactly once, in order; no
file descriptor, Redis connection or asyncio task is left behind once the viewers have
gone; every process is alive. The RSS curve is printed, with a loose bound on growth after
warm-up (a leak of the size that matters here is megabytes per thousand viewings).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.soak import problems
from tests.support import long_form
from tests.support.churn import Churn, churn_cluster

pytestmark = [pytest.mark.anyio, long_form.mark]

SECONDS = long_form.budget(10, 45)
"""Of new viewings and drops; then each viewing reads its stream to the end. 45 s at the
full budget (``make test-long``); minutes with ``make soak``."""
TOKEN_MS = long_form.budget(100, 300)
"""The generations' pace: at 100 ms (~7 s a generation) the short window still sees the
first generations end, the producer replace them and viewers move on to the new ones,
and its last viewings end ~7 s after it rather than ~20."""
GENERATIONS = long_form.budget(30, 50)
"""Kept in flight at once."""
VIEWERS = long_form.budget(250, 500)
"""Each watching one generation after another, dropping and resuming."""


async def test_load_with_churn_loses_nothing_and_leaks_nothing(tmp_path: Path) -> None:
    with churn_cluster(tmp_path, TOKEN_MS) as cluster:
        figures = await Churn(
            cluster, seconds=SECONDS, generations=GENERATIONS, viewers=VIEWERS
        ).run()
        alive = {p.name: p.alive() for p in [*cluster.frontends, *cluster.workers]}
        logs = cluster.logs()
    print()
    print("\n".join(figures.lines()))

    assert all(alive.values()), (alive, logs)
    assert "Traceback" not in logs, logs
    assert figures.generations >= GENERATIONS and figures.viewings >= VIEWERS, figures.lines()[0]
    assert figures.lost == 0 and figures.duplicated == 0, figures.not_exact[:5]
    assert not figures.not_exact, figures.not_exact[:5]
    # A process keeps at most REDIS_POOL command connections (plus its blocking reader)
    # open after a burst; anything a viewing or generation left behind would add up
    # thousands of times over.
    assert problems(figures, len(alive)) == []
    assert figures.connections > figures.viewings, "viewers dropped and resumed"
    assert figures.rss is not None
    samples = figures.rss.samples
    warm = samples[len(samples) // 3][1]
    for name, kb in samples[-1][1].items():
        assert kb - warm[name] < 40 * 1024, f"{name} grew {(kb - warm[name]) / 1024:.0f} MB"
