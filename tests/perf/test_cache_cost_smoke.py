"""A smoke run of the prompt-cache benchmark (tests/perf/cache_cost.py) on a short chat:
both ways and both scenarios run against real processes, the table prints, and with
the cache on a chat's input is read from it (the figures are the full run's, in
docs/cost.md, not asserted here)."""

from __future__ import annotations

import sys

import pytest

from tests.support.procs import ROOT, run_in_group


@pytest.mark.timeout(330)
def test_the_cache_benchmark_runs_both_ways() -> None:
    proc = run_in_group(
        [sys.executable, "-m", "tests.perf.cache_cost", "--turns", "3", "--cut-at", "2"],
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines() if line.startswith("| ")]
    cells = {(r[0].strip(), r[1].strip()): [c.strip() for c in r] for r in rows[2:]}
    assert set(cells) == {(s, w) for s in ("chat", "takeover") for w in ("off", "on")}, rows
    for scenario in ("chat", "takeover"):
        off, on = cells[scenario, "off"], cells[scenario, "on"]
        assert off[4] == "0" and on[4] != "0", (off, on)  # reads: none without the cache
        assert off[3] == on[3], (off, on)  # the same prompts either way
