"""Helpers shared by the browser tests (tests/test_browser*.py): what Chromium and Node
need, finding and stopping leftover browser processes, reading a PNG's size."""

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

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_DIR = ROOT / "tests" / "clients" / "browser"
SCRIPT = BROWSER_DIR / "demo.mjs"
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
        missing.append(f"{CHROMIUM} is missing: install it with apt-get install chromium")
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


def start_node_script(
    script: Path, args: list[str], env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """A browser script, started; ``node_host.finish`` waits for it."""
    return subprocess.Popen(
        ["node", str(script), *args],
        cwd=str(ROOT),
        env={**os.environ, **(env or {})},
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


def pids_using(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (our private profile folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


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


def chromium_socket_dir(profile: Path) -> Path | None:
    """The folder Chromium made in the temporary directory for ``profile``'s singleton
    socket (the profile's ``SingletonSocket`` links into it), or None. A browser that is
    closed rather than quit can leave it behind (the scripts' cleanup removes it)."""
    with contextlib.suppress(OSError):
        folder = Path(os.readlink(profile / "SingletonSocket")).parent
        if folder.name.startswith("org.chromium.Chromium."):
            return folder
    return None


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height
