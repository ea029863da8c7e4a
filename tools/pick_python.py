"""Print the interpreter ``make`` builds the project's virtualenv with: the system's
``/usr/bin/python3`` when it is Python >= 3.11 and can make a virtualenv (``venv`` and
``ensurepip``), else ``python3`` on PATH.

Why: how an interpreter was built changes how fast everything in it runs. A
distribution's Python (Debian's, Ubuntu's, Fedora's) is built with profile-guided and
link-time optimisation; one built from source with the defaults (``pyenv install``, for
one) is not, and links its own library dynamically. On a two-core machine with both,
the whole suite took less CPU under Debian's Python than under pyenv's (docs/testing.md,
"Which Python runs the suite", has the runs and their ratio). A rule, not a
race: timing the two at set-up was tried, and on a shared machine a second's noise picked
the slower one.

Runs under any Python 3 (standard library only); prints ``python3`` when the system's
does not qualify, so that ``python3 -m venv`` or pip says what is wrong. ``make
PYTHON=/path/to/python`` skips all this.
"""

from __future__ import annotations

import subprocess
import sys

SYSTEM = "/usr/bin/python3"
CHECK = "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"


def usable(path: str) -> bool:
    """Is ``path`` a Python >= 3.11 that can make a virtualenv?"""
    try:
        done = subprocess.run([path, "-c", CHECK], check=False, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def pick() -> str:
    return SYSTEM if usable(SYSTEM) else "python3"


if __name__ == "__main__":
    chosen = pick()
    print(f"building the virtualenv with {chosen}", file=sys.stderr)
    print(chosen)
