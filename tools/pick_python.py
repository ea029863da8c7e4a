"""Print the interpreter ``make`` builds the project's virtualenv with: the faster of
``python3`` on PATH and the system's ``/usr/bin/python3``, among those that are Python >=
3.11 and can make a virtualenv (``venv`` and ``ensurepip``).

Why: how an interpreter was built changes how fast everything in it runs. A distribution's
Python (Debian's, Fedora's) and python.org's are built with profile-guided and link-time
optimisation; a Python built from source with the defaults (pyenv's ``pyenv install``, for
one) is not, and it links its own library dynamically. On a two-core machine with both,
the unit tests took 13 % less CPU under Debian's 3.11 than under pyenv's (docs/testing.md,
"Which Python runs the suite"), and the whole suite about as much less.

Each candidate times the same pure-Python loop in its own process, three times in turn
(the machine's speed drifts); the fastest minimum wins, and ``python3`` on PATH keeps its
place unless another is at least 5 % faster. Runs under any Python 3 (standard library
only) and prints ``python3`` when nothing qualifies, so that ``python3 -m venv`` or pip
says what is wrong. ``make PYTHON=/path/to/python`` skips all this.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CANDIDATES = ("python3", "/usr/bin/python3")
CHECK = "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"
LOOP = (
    "import time; t = time.process_time(); sum(i * i for i in range(2_000_000)); "
    "print(time.process_time() - t)"
)
ROUNDS = 3
MARGIN = 0.95
"""Another interpreter replaces ``python3`` on PATH only when it takes at most this
fraction of its time."""


def usable(path: str) -> bool:
    try:
        done = subprocess.run([path, "-c", CHECK], check=False, capture_output=True, timeout=30)
        return done.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def seconds(path: str) -> float:
    """CPU seconds of the loop in ``path``; infinite if it could not say."""
    try:
        done = subprocess.run([path, "-c", LOOP], check=True, capture_output=True, timeout=60)
        return float(done.stdout)
    except (OSError, ValueError, subprocess.SubprocessError):
        return float("inf")


def candidates() -> list[str]:
    """The usable candidates, each interpreter once (``python3`` is often the system's)."""
    found: dict[str, str] = {}
    for name in CANDIDATES:
        path = shutil.which(name)
        if path and os.path.realpath(path) not in found and usable(path):
            found[os.path.realpath(path)] = path
    return list(found.values())


def pick() -> str:
    paths = candidates()
    if len(paths) < 2:
        return paths[0] if paths else "python3"
    best = {path: float("inf") for path in paths}
    for _ in range(ROUNDS):
        for path in paths:
            best[path] = min(best[path], seconds(path))
    first = paths[0]
    fastest = min(paths, key=best.__getitem__)
    return fastest if best[fastest] <= MARGIN * best[first] else first


if __name__ == "__main__":
    chosen = pick()
    print(f"building the virtualenv with {chosen}", file=sys.stderr)
    print(chosen)
