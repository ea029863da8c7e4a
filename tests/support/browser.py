"""Helpers shared by the browser tests (tests/clients/test_browser*.py): what Chromium and
Node need, starting a browser script (on the test process's shared Chromium), stopping
what a script's own browser left, reading a PNG's size."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

from tests.support import node_host
from tests.support.procs import ROOT
from tests.support.shared_chromium import CHROMIUM, ENV, SHARED, chromium_socket_dir, pids_using

BROWSER_DIR = ROOT / "tests" / "clients" / "browser"
SCRIPT = BROWSER_DIR / "demo.mjs"
USECHAT_BROWSER = ROOT / "tests" / "clients" / "usechat" / "browser.mjs"
ARTIFACTS = ROOT / "tests" / "artifacts"
PANES = ("a", "b", "late", "flaky")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NODE_HINT = (
    "{}: install Node.js >= 20 with npm (playwright-core needs it; Debian 13's"
    " nodejs and npm packages, or NodeSource's on Debian 12, whose own nodejs is 18)"
)


def missing_prerequisites() -> list[str]:
    missing = []
    if not CHROMIUM.exists():
        missing.append(
            f"{CHROMIUM} is missing: install it with apt-get install chromium-headless-shell"
        )
    node = shutil.which("node")
    if node is None:
        missing.append(NODE_HINT.format("node is missing"))
    else:
        run = subprocess.run([node, "--version"], check=False, capture_output=True, text=True)
        version = run.stdout
        major = version.strip().lstrip("v").split(".")[0]
        if not major.isdigit() or int(major) < 20:
            missing.append(NODE_HINT.format(f"node is {version.strip() or 'unusable'}"))
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        missing.append(
            "tests/clients/browser/node_modules is missing:"
            " run npm ci --prefix tests/clients/browser"
            " (make test does this)"
        )
    return missing


def script_env(script: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """``env``, and for a browser script (one of BROWSER_DIR's, or usechat's) not given a
    browser of its own, the address of the test process's shared Chromium (started if
    need be)."""
    env = env or {}
    if ENV in env or not (script.parent == BROWSER_DIR or script == USECHAT_BROWSER):
        return env
    return {**SHARED.env(), **env}


def start_node_script(
    script: Path, args: list[str], env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """A Node script (a browser script on the shared Chromium), started;
    ``node_host.finish`` waits for it."""
    return subprocess.Popen(
        ["node", str(script), *args],
        cwd=str(ROOT),
        env={**os.environ, **script_env(script, env)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def run_node_script(
    script: Path, args: list[str], timeout: float, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run a browser script to its end (``node_host.finish``)."""
    return node_host.finish(start_node_script(script, args, env), timeout)


def stop_browser_leftovers(profile: Path) -> None:
    """Chromium normally exits with the script; kill by pid whatever of ours is left, and
    remove the folder of its singleton socket (``socket_dir``) if it is still there."""
    socket_dir = chromium_socket_dir(profile)
    deadline = time.monotonic() + 5
    while (pids := pids_using(str(profile))) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if socket_dir is not None:
        shutil.rmtree(socket_dir, ignore_errors=True)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height
