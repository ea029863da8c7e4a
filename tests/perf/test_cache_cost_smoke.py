"""A smoke run of the prompt-cache benchmark (tests/perf/cache_cost.py) on a short chat:
both ways and both scenarios run against real processes, the table prints, and with
the cache on a chat's input is read from it (the figures are the full run's, in
docs/cost.md, not asserted here). Run in the test process (its command line only parses
two numbers): its front-ends and workers are then forked from the test process's fork
server, not from one a new Python would start and import again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.perf import cache_cost


@pytest.mark.timeout(330)
def test_the_cache_benchmark_runs_both_ways(tmp_path: Path) -> None:
    text = cache_cost.table(cache_cost.measure(tmp_path, 3, 2))
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| ")]
    cells = {(r[0].strip(), r[1].strip()): [c.strip() for c in r] for r in rows[2:]}
    assert set(cells) == {(s, w) for s in ("chat", "takeover") for w in ("off", "on")}, rows
    for scenario in ("chat", "takeover"):
        off, on = cells[scenario, "off"], cells[scenario, "on"]
        assert off[4] == "0" and on[4] != "0", (off, on)  # reads: none without the cache
        assert off[3] == on[3], (off, on)  # the same prompts either way
