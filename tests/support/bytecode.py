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
