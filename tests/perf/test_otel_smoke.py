"""A smoke run of the traces' side-by-side comparison (tests/perf/otel.py --smoke): the
front-end runs the same small load untraced and exporting to an OTLP receiver, every
event reaches every viewer in both, the traced run's request spans arrive, and the
summary prints the ratio. No timing assertion: the figures are the full run's
(docs/history/performance-rounds.md, "Traces")."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.support.procs import ROOT, run_in_group


@pytest.mark.timeout(150)
def test_the_traces_comparison_runs_both_configurations(tmp_path: Path) -> None:
    out = tmp_path / "otel.json"
    proc = run_in_group(
        [sys.executable, "-m", "tests.perf.otel", "--smoke", "--json", str(out)],
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ratio traced/untraced" in proc.stdout, proc.stdout
    found = json.loads(out.read_text())
    assert set(found) == {"untraced", "traced"}
    for name, (row,) in found.items():
        assert row["lost"] == 0 and row["duplicated"] == 0, (name, row)
        assert row["deliveries"] > 0 and row["server_cpu_s_per_100k"] > 0, (name, row)
        assert row["side_publishes"] > 0, (name, row)
    assert found["untraced"][0]["spans_exported"] == 0
    assert found["traced"][0]["spans_exported"] > 0
