"""The suite's shared bytecode cache (tests/conftest.py, where ``PYTHONDONTWRITEBYTECODE``
is set): the bytecode that already exists put in it before the tests begin.

With a cache prefix (``sys.pycache_prefix``), Python reads and writes bytecode only
under the prefix, so the bytecode pip compiled beside the installed packages (and the
interpreter's beside its standard library) is never read: on a fresh clone every test
process compiled the test frameworks, the provider SDKs and the agent frameworks again
at once, about 23 s of a run's wall time on two cores (``pytest --collect-only -n 4``:
38 s cold, 15 s warm). ``link_installed`` links each of those files to where the prefix
looks for it, which takes about 2 s. Python checks every file it reads against its
source's size and time as usual, and replaces a stale one with a new file (never
writing into a linked one), so nothing beside the sources changes."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any


def link_installed(prefix: str) -> int:
    """Link (or, across file systems, copy) the bytecode compiled beside the standard
    library and the installed packages to where ``prefix`` is searched; returns how many
    files were added (those already there are left). A folder linked since it last
    changed (a package installed or removed) is not walked again."""
    suffix = f".{sys.implementation.cache_tag}.pyc"  # not the optimized or pytest's ones
    roots = {sysconfig.get_path(name) for name in ("stdlib", "purelib", "platlib")}
    added = 0
    for root in sorted(roots):
        stamp = os.path.join(prefix + os.path.abspath(root), ".linked")
        if os.path.exists(stamp) and os.stat(stamp).st_mtime >= os.stat(root).st_mtime:
            continue
        for folder, _dirs, files in os.walk(root):
            if os.path.basename(folder) != "__pycache__":
                continue
            names = [name for name in files if name.endswith(suffix) and name.count(".") == 2]
            if not names:
                continue
            target = prefix + os.path.dirname(os.path.abspath(folder))
            os.makedirs(target, exist_ok=True)
            for name in names:
                added += _place(os.path.join(folder, name), os.path.join(target, name))
        os.makedirs(os.path.dirname(stamp), exist_ok=True)
        with open(stamp, "w"):
            pass
    return added


def rewrite_only(package: str) -> None:
    """Let pytest rewrite the asserts of ``package``'s modules (and of test modules and
    conftest files, which it always rewrites), not of the third-party packages it marks
    for it: every package that ships a pytest plugin (hypothesis, schemathesis, anyio,
    xdist, langsmith…), whole, even with the plugin disabled (``-p no:``). Their asserts
    are their own, never a test's; on a fresh clone each test process rewrote and cached
    them at once (about 250 modules, some 3 s of CPU a process), where their bytecode
    compiled by pip is ready (``link_installed``). To be called before they are imported
    (what pytest imported to load the plugins stays as it is). This uses pytest's
    private attributes: where they are missing (another pytest), nothing changes."""
    try:
        from _pytest.assertion.rewrite import AssertionRewritingHook
    except ImportError:
        return
    for hook in sys.meta_path:
        marked = getattr(hook, "_must_rewrite", None)
        if isinstance(hook, AssertionRewritingHook) and isinstance(marked, set):
            ours = {name for name in marked if name == package or name.startswith(package + ".")}
            marked.intersection_update(ours)
            getattr(hook, "_marked_for_rewrite_cache", {}).clear()


def _place(source: str, target: str) -> int:
    if os.path.exists(target):
        return 0
    try:
        os.link(source, target)
    except FileExistsError:  # another run placed it meanwhile
        return 0
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, target)
    return 1


def rewrite_tests(config: Any, files: list[Path]) -> int:
    """Rewrite the asserts of the test modules ``files`` and cache each as pytest would
    on importing it, for those not already cached; returns how many were not (a module
    that does not compile is left as it is: pytest reports it when it collects it).

    On a fresh clone every test process found no cached module and rewrote all of them at
    once (six seconds of CPU each, about a tenth of a run's start on two cores). Done
    here once, in two processes (this one and a child it forks), before they start; each
    then reads the cache as on any later run. This uses pytest's own functions, which are
    not public: where they are missing (another pytest), nothing is done and each test
    process rewrites as before."""
    try:
        from _pytest.assertion import AssertionState
        from _pytest.assertion.rewrite import (
            PYC_TAIL,
            _read_pyc,
            _rewrite_test,
            _write_pyc,
            get_cache_dir,
        )
    except ImportError:
        return 0
    state = AssertionState(config, "rewrite")

    def stale(fn: Path) -> Path | None:
        pyc = get_cache_dir(fn) / (fn.name[:-3] + PYC_TAIL)
        return None if _read_pyc(fn, pyc, state.trace) is not None else pyc

    todo = [(fn, pyc) for fn in files if (pyc := stale(fn)) is not None]

    def rewrite(part: list[tuple[Path, Path]]) -> None:
        for fn, pyc in part:
            try:
                source_hash, co = _rewrite_test(fn, config)
            except (SyntaxError, ValueError, OSError):  # pytest reports it when collecting
                continue
            pyc.parent.mkdir(parents=True, exist_ok=True)
            _write_pyc(state, co, source_hash, pyc)

    if len(todo) < 8:
        rewrite(todo)
        return len(todo)
    child = os.fork()
    if child == 0:  # the child: the second half, then gone without running any cleanup
        status = 1
        try:
            rewrite(todo[1::2])
            status = 0
        finally:
            os._exit(status)
    rewrite(todo[::2])
    os.waitpid(child, 0)  # had it failed, the test processes would rewrite its half
    return len(todo)
