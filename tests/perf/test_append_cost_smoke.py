"""A smoke run of the append benchmark (tests/perf/append_cost.py): this tree's append
script beside itself, and beside a script that knows no append's token (as a tree before
it), in one Redis; every append must be accepted. The figures are the full run's
(docs/performance.md), not asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.perf import append_cost

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("before", ["this tree", "a tree without tokens"])
def test_the_append_benchmark_runs_both_scripts(tmp_path: Path, before: str) -> None:
    tree = ROOT
    if before != "this tree":  # the token's part taken out, as the script before had it
        script = (ROOT / append_cost.SCRIPT).read_text()
        older = script.replace(
            "local extras, once = ARGV[16], ARGV[17]", "local extras, once = ARGV[16], ''"
        )
        older = older.replace("local first = 18 + 2 * n_meta", "local first = 17 + 2 * n_meta")
        older = older.replace(
            "for j = 18, 17 + 2 * n_meta, 2 do", "for j = 17, 16 + 2 * n_meta, 2 do"
        )
        older = older.replace("(ARGV[17], or '')", "(none)")
        assert older.count("ARGV[17]") == 0 and older != script, "the script's layout moved"
        tree = tmp_path
        (tree / append_cost.SCRIPT).parent.mkdir(parents=True)
        (tree / append_cost.SCRIPT).write_text(older)
    cmd = [sys.executable, "-m", "tests.perf.append_cost", "--before", str(tree)]
    out = subprocess.run(
        [*cmd, "--appends", "200", "--rounds", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["project", "before"], out.stdout
    assert lines[2].startswith("project / before: "), out.stdout
