"""Requests schemathesis draws from an operation of an OpenAPI document, as the schema
tests draw them: the same ones each run (``derandomize``), no deadline, no example
database, no health check (a large schema is slow to draw from, which is no failure)."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy
from schemathesis import Case


def for_each_case(
    cases: SearchStrategy[Case], examples: int
) -> Callable[[Callable[[Case], None]], Callable[[], None]]:
    """Decorate a check of one case: calling it runs the check on ``examples`` cases."""

    def run(check: Callable[[Case], None]) -> Callable[[], None]:
        drawn = settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        runner: Callable[[], None] = given(case=cases)(drawn(check))
        return runner

    return run
