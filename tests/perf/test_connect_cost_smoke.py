"""A smoke run of the connect benchmark (tests/perf/connect_cost.py): a few hundred
viewers' heads given to an in-process front-end's first protocol, every one answered from
the parser and lost again, in this process and in a new interpreter on this tree's code
(as ``--before`` runs another tree's). The figures are the full run's
(docs/performance.md), not asserted here."""

from __future__ import annotations

import argparse

import pytest

from tests.perf import connect_cost


@pytest.mark.timeout(120)
def test_the_connect_benchmark_answers_every_head_from_the_parser() -> None:
    # ``measure`` raises unless each of the connects was answered from the parser
    for head in connect_cost.HEADS:
        result = connect_cost.measure(300, 2, head)
        assert len(result["rounds"]) == 2, result
        assert all(r["connect"] > 0 and r["lost"] > 0 for r in result["rounds"]), result
        assert 200 < result["bytes"] < 20_000, result  # what an open viewer keeps


@pytest.mark.timeout(120)
def test_a_run_on_a_tree_uses_that_trees_code() -> None:
    args = argparse.Namespace(connects=200, rounds=1, head="bench")
    result = connect_cost._one(connect_cost.ROOT, args)
    assert result["code"] == str(connect_cost.ROOT / "broadcaster"), result
    assert len(result["rounds"]) == 1, result
