"""The test process's shared Chromium (tests/support/shared_chromium.py): browser scripts
run on it in browser contexts that share nothing, one that died is started again, and
stopping it leaves no process and no folder behind. Needs Debian's chromium-headless-shell
and the npm packages of tests/clients/browser; without them the test fails and says what
to install."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.support.browser import BROWSER_DIR, missing_prerequisites, run_node_script
from tests.support.shared_chromium import SHARED, SharedChromium, pids_using

SCRIPT = BROWSER_DIR / "isolation.mjs"


@pytest.fixture(autouse=True)
def _prerequisites() -> None:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("the browser test needs:\n  " + "\n  ".join(missing), pytrace=False)


def _found(tmp_path: Path) -> dict[str, object]:
    """What isolation.mjs found in its context when it started."""
    code, out, err = run_node_script(SCRIPT, ["http://127.0.0.1:9", str(tmp_path / "x.png")], 60)
    assert code == 0, f"isolation.mjs exited with {code}\n{err}\n{out}"
    found: dict[str, object] = json.loads(out.strip().splitlines()[-1])["found"]
    return found


def test_scripts_share_the_browser_and_nothing_else(tmp_path: Path) -> None:
    _found(tmp_path)
    assert SHARED.popen is not None
    browser = SHARED.popen.pid
    assert _found(tmp_path) == {"cookie": "", "stored": None}, "the first script's state leaked"
    assert SHARED.popen is not None and SHARED.popen.pid == browser, "a second browser started"


def test_a_browser_that_died_is_started_again(tmp_path: Path) -> None:
    SHARED.env()
    assert SHARED.popen is not None and SHARED.home is not None
    dead, home = SHARED.popen, SHARED.home
    os.kill(dead.pid, signal.SIGKILL)
    dead.wait(10)
    assert _found(tmp_path) == {"cookie": "", "stored": None}
    assert SHARED.popen is not None and SHARED.popen.pid != dead.pid
    assert not home.exists(), "the dead browser's profile was not removed"


def test_stopping_it_leaves_nothing_and_a_module_that_did_not_use_it_stops_it() -> None:
    chromium = SharedChromium()
    try:
        chromium.env()
        assert chromium.popen is not None and chromium.home is not None
        home, socket_dir = chromium.home, chromium.socket_dir
        # The headless shell makes no singleton socket; a build that does has its folder
        # removed.
        assert socket_dir is None or socket_dir.exists()
        chromium.module_ended()  # used during the module: kept
        assert chromium.popen is not None and chromium.popen.poll() is None
        chromium.module_ended()  # a module that did not use it: stopped
        assert chromium.popen is None
        assert pids_using(str(home)) == []
        assert not home.exists() and (socket_dir is None or not socket_dir.exists())
    finally:
        chromium.stop()  # a failed check above leaves no browser of its own behind
