"""What collecting the suite imported of the packages that cost seconds to import (the
provider SDKs and the agent frameworks), and which test module's collection did (a pytest
plugin, loaded by tests/conftest.py).

Every test process collects every test module, so a module that imports one of them at
its top makes each process pay for it before its first test, whether or not it runs a
test that needs it; a test imports them when it runs instead. The plugin only records,
by module, what was new in ``sys.modules`` after each module's collection (a few lookups
each); ``tests/unit/test_suite_layout.py`` holds the record to nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterator

import pytest

HEAVY = ("anthropic", "openai", "agents", "pydantic_ai", "langgraph", "langchain_core")
"""Packages whose import costs seconds of CPU: the provider SDKs and the agent frameworks."""

KEY = pytest.StashKey[dict[str, list[str]]]()
"""In ``config.stash``: test module -> the ``HEAVY`` packages its collection imported."""


def loaded(modules: Collection[str]) -> set[str]:
    """The ``HEAVY`` packages among ``modules`` (names, as the keys of ``sys.modules``)."""
    return {name for name in HEAVY if name in modules}


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    if not isinstance(collector, pytest.Module):
        return (yield)
    before = loaded(sys.modules)
    try:
        return (yield)
    finally:
        new = loaded(sys.modules) - before
        record = collector.config.stash.setdefault(KEY, {})
        if new:
            record[str(collector.path)] = sorted(new)
