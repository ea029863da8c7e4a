"""The test modules' asserts rewritten once, before the test processes start
(tests/support/bytecode.py): what it writes is what pytest itself reads back; and only
the project's own modules rewritten, not the packages of pytest's plugins."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from _pytest.assertion.rewrite import PYC_TAIL, _read_pyc, get_cache_dir

from tests.support import bytecode


def modules(folder: Path, n: int) -> list[Path]:
    folder.mkdir()
    files = []
    for i in range(n):
        path = folder / f"test_m{i}.py"
        path.write_text(f"def test_it():\n    x = {i}\n    assert x == -1\n")
        files.append(path)
    return files


def cached(path: Path) -> object:
    return _read_pyc(path, get_cache_dir(path) / (path.name[:-3] + PYC_TAIL))


@pytest.mark.parametrize("n", [3, 12])  # one process; two (a child forked for half)
def test_each_module_is_cached_as_pytest_reads_it_and_only_once(
    tmp_path: Path, pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path / "prefix"))
    files = modules(tmp_path / "tests", n)
    assert all(cached(path) is None for path in files)

    assert bytecode.rewrite_tests(pytestconfig, files) == n
    assert bytecode.rewrite_tests(pytestconfig, files) == 0  # all cached: none again

    for i, path in enumerate(files):
        code = cached(path)
        assert code is not None, path
        namespace: dict[str, object] = {}
        exec(code, namespace)  # the module as pytest would run it: its assert explains
        with pytest.raises(AssertionError, match=rf"assert {i} == -1"):
            namespace["test_it"]()  # type: ignore[operator]


def test_a_changed_module_is_rewritten_again(
    tmp_path: Path, pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path / "prefix"))
    [path] = modules(tmp_path / "tests", 1)
    assert bytecode.rewrite_tests(pytestconfig, [path]) == 1
    path.write_text("def test_it():\n    assert 'changed' == 'x'\n")
    assert bytecode.rewrite_tests(pytestconfig, [path]) == 1
    namespace: dict[str, object] = {}
    exec(cached(path), namespace)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="changed"):
        namespace["test_it"]()  # type: ignore[operator]


def test_a_module_that_does_not_compile_is_left_to_the_collection(
    tmp_path: Path, pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not cached and no error here: pytest reports it, as for any module, when it
    collects it; the others are cached."""
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path / "prefix"))
    good, bad = modules(tmp_path / "tests", 2)
    bad.write_text("def test_it(:\n")
    bytecode.rewrite_tests(pytestconfig, [good, bad])
    assert cached(good) is not None
    assert cached(bad) is None


def test_only_the_projects_modules_are_rewritten() -> None:
    """The packages pytest marks for its plugins (hypothesis, schemathesis…) load from
    their own bytecode; this module, a test module, is rewritten (its asserts explain
    themselves), and so are the suite's own plugins."""
    import hypothesis
    import schemathesis
    from _pytest.assertion.rewrite import AssertionRewritingHook

    (hook,) = [h for h in sys.meta_path if isinstance(h, AssertionRewritingHook)]
    marked = hook._must_rewrite
    assert "tests.support.watchdog" in marked and "tests.support.cpu_log" in marked
    assert all(name == "tests" or name.startswith("tests.") for name in marked), marked
    for package in (hypothesis, schemathesis):
        assert not isinstance(package.__loader__, AssertionRewritingHook), package
    assert isinstance(sys.modules[__name__].__loader__, AssertionRewritingHook)
